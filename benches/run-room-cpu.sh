#!/usr/bin/env bash
# The room's efficiency: server CPU per delivery of netlabd's chat (line
# dialect) and of `ncat -l --chat`, under benches/c/chat_flood.c, a
# generator that shares no code with netlab: one sender writes one message
# per write(), up to INFLIGHT in flight, to CLIENTS-1 readers. Unlike
# run-chat.sh (whose generator batches writes), every message reaches the
# server on its own, so what is measured is the cost of relaying each one.
#
# Server pinned to CPU 0, generator to CPU 1; the servers take turns for
# ROUNDS rounds and each one's round with the least CPU per delivery is
# reported (another process on the server's core only ever adds to it).
# Appends the table and the exact commands to benches/results/room-cpu.md.
#
# Settings (environment): CLIENTS (101: 1 sender, 100 readers), INFLIGHT
# (96), SIZE (64), DURATION (10), WARMUP (1), ROUNDS (3), SERVERS ("netlabd
# netlabd-nagle ncat"; "netlabd-nagle" is netlabd with tcp_nodelay = false,
# Nagle's algorithm on as ncat leaves it; "baseline" adds NETLABD_BASELINE,
# an older netlabd binary).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

CLIENTS=${CLIENTS:-101}
INFLIGHT=${INFLIGHT:-96}
SIZE=${SIZE:-64}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
SERVERS=${SERVERS:-netlabd netlabd-nagle ncat}
RESULTS=$ROOT/benches/results/room-cpu.md
NAME=run-room-cpu
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"

echo "$NAME: building release binaries and the generator" >&2
cargo build --release --workspace --quiet
FLOOD=$WORK/chat_flood
gcc -O2 -Wall -Wextra -Werror -o "$FLOOD" "$ROOT/benches/c/chat_flood.c"

wait_for_port() {
    local addr=$1
    for _ in $(seq 100); do
        if python3 -c 'import socket, sys; h, p = sys.argv[1].rsplit(":", 1); socket.create_connection((h, int(p)), 0.2).close()' "$addr" 2>/dev/null; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "$NAME: the server exited before listening on $addr" >&2; return 1; }
        sleep 0.1
    done
    echo "$NAME: nothing listens on $addr after 10 s" >&2
    return 1
}

COMMANDS=()
# Runs the generator against PORT (LOGIN: line or none) into FILE; the
# generator reads the server's CPU time itself, over its measured window.
flood() {
    local port=$1 login=$2 file=$3
    local args=(127.0.0.1 "$port" "$CLIENTS" "$INFLIGHT" "$SIZE" "$WARMUP" "$DURATION" "$login")
    taskset -c "$CLIENT_CPU" timeout 300 "$FLOOD" "${args[@]}" "$SERVER_PID" >"$file" || {
        echo "$NAME: the generator failed against port $port" >&2
        rm -f "$file"
        return 1
    }
    [ "$ROUND" -eq 1 ] && COMMANDS+=("taskset -c $CLIENT_CPU chat_flood ${args[*]} SERVER_PID")
    return 0
}

run_netlabd() {
    local key=${1:-netlabd} binary=${2:-$BIN/netlabd} extra=${3:-} port config
    port=$(free_port)
    config=$WORK/netlabd.toml
    cat >"$config" <<CONF
[[server]]
name = "chat"
service = "chat"
listen = [{ addr = "127.0.0.1:$port", dialect = "line" }]
$extra
CONF
    taskset -c "$SERVER_CPU" "$binary" --config "$config" 2>"$WORK/$key.log" &
    SERVER_PID=$!
    wait_for_port "127.0.0.1:$port" || { cat "$WORK/$key.log" >&2; return 1; }
    flood "$port" line "$WORK/$key.$ROUND.json"
    stop_server
    [ "$ROUND" -eq 1 ] && COMMANDS+=("taskset -c $SERVER_CPU $binary --config netlabd.toml  # chat, listen = [{ addr = \"127.0.0.1:$port\", dialect = \"line\" }] $extra")
    return 0
}

run_ncat() {
    local port max=$((CLIENTS + 10))
    if ! command -v ncat >/dev/null 2>&1; then
        echo "$NAME: ncat is missing; installing it" >&2
        { apt-get -o DPkg::Lock::Timeout=600 update && apt-get -o DPkg::Lock::Timeout=600 install -y ncat; } >"$WORK/apt.log" 2>&1 ||
            { tail -n 5 "$WORK/apt.log" >&2; echo "$NAME: cannot install ncat" >&2; exit 1; }
    fi
    port=$(free_port)
    taskset -c "$SERVER_CPU" ncat -l --chat --max-conns "$max" 127.0.0.1 "$port" </dev/null >/dev/null 2>"$WORK/ncat.log" &
    SERVER_PID=$!
    wait_for_port "127.0.0.1:$port" || { cat "$WORK/ncat.log" >&2; return 1; }
    flood "$port" none "$WORK/ncat.$ROUND.json"
    stop_server
    [ "$ROUND" -eq 1 ] && COMMANDS+=("taskset -c $SERVER_CPU ncat -l --chat --max-conns $max 127.0.0.1 $port")
    return 0
}

# Server CPU ns per delivery of one round's FILE.
ns_per_delivery() {
    awk -v cpu="$(field "$1" server_cpu_s)" -v rate="$(field "$1" deliveries_per_s)" -v d="$DURATION" \
        'BEGIN { if (rate > 0) printf "%.0f", cpu * 1e9 / (rate * d) }'
}

# Server and generator CPU together, ns per delivery, of one round's FILE:
# on loopback a segment held for an ACK (Nagle's algorithm) leaves in the
# receiver's system call, so its cost moves from the server to the
# generator; the sum is what the relay costs the machine.
ns_both() {
    awk -v s="$(field "$1" server_cpu_s)" -v g="$(field "$1" generator_cpu_s)" \
        -v rate="$(field "$1" deliveries_per_s)" -v d="$DURATION" \
        'BEGIN { if (rate > 0) printf "%.0f", (s + g) * 1e9 / (rate * d) }'
}

# KEY's round with the least CPU per delivery, as a table row.
row() {
    local label=$1 key=$2 file best="" best_ns="" ns all=()
    for file in "$WORK/$key".*.json; do
        [ -s "$file" ] || continue
        ns=$(ns_per_delivery "$file")
        all+=("$ns")
        if [ -z "$best" ] || [ "$ns" -lt "$best_ns" ]; then best=$file; best_ns=$ns; fi
    done
    [ -n "$best" ] || return 0
    echo "$best_ns" >"$WORK/$key.best"
    ns_both "$best" >"$WORK/$key.both"
    printf '| %s | %s | %s | %s ns (%s%% busy) | %s ns | %s |\n' "$label" \
        "$(field "$best" sent_per_s)" "$(field "$best" deliveries_per_s)" "$best_ns" \
        "$(awk -v c="$(field "$best" server_cpu_s)" -v d="$DURATION" 'BEGIN { printf "%.0f", c * 100 / d }')" \
        "$(ns_both "$best")" "${all[*]}"
}

for ROUND in $(seq "$ROUNDS"); do
    echo "$NAME: round $ROUND of $ROUNDS" >&2
    for server in $SERVERS; do
        case $server in
            netlabd) run_netlabd ;;
            netlabd-nagle) run_netlabd netlabd-nagle "$BIN/netlabd" "tcp_nodelay = false" ;;
            baseline)
                [ -x "${NETLABD_BASELINE:-}" ] || { echo "$NAME: baseline needs NETLABD_BASELINE" >&2; exit 2; }
                run_netlabd baseline "$NETLABD_BASELINE" ;;
            ncat) run_ncat ;;
            *) echo "$NAME: unknown server $server (netlabd, netlabd-nagle, baseline, ncat)" >&2; exit 2 ;;
        esac
    done
done

ROWS=()
for server in $SERVERS; do
    case $server in
        netlabd) ROWS+=("$(row "netlabd (line)" netlabd)") ;;
        netlabd-nagle) ROWS+=("$(row "netlabd (line), tcp_nodelay = false" netlabd-nagle)") ;;
        baseline) ROWS+=("$(row "netlabd baseline" baseline)") ;;
        ncat) ROWS+=("$(row "ncat --chat" ncat)") ;;
    esac
done

REPORT=$WORK/report.md
{
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -srm), $(nproc --all) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "1 sender, $((CLIENTS - 1)) readers, $SIZE-byte messages, one per write(), up to $INFLIGHT in flight"
    echo "(benches/c/chat_flood.c); ${DURATION} s measured after ${WARMUP} s warm-up; server on CPU $SERVER_CPU, generator on CPU $CLIENT_CPU."
    echo "Each server's round with the least CPU per delivery, of $ROUNDS interleaved; the last column lists every round's."
    echo
    echo "| server | msgs sent/s | deliveries/s | server CPU per delivery | server + generator CPU per delivery | rounds (server ns per delivery) |"
    echo "| --- | ---: | ---: | ---: | ---: | --- |"
    printf '%s\n' "${ROWS[@]}" | sed '/^$/d'
    echo
    if [ -s "$WORK/netlabd.best" ] && [ -s "$WORK/ncat.best" ]; then
        awk -v n="$(cat "$WORK/netlabd.best")" -v c="$(cat "$WORK/ncat.best")" \
            'BEGIN { printf "netlabd / ncat, server CPU per delivery: %.2f (target: at most 1.00)\n\n", n / c }'
        awk -v n="$(cat "$WORK/netlabd.both")" -v c="$(cat "$WORK/ncat.both")" \
            'BEGIN { printf "netlabd / ncat, server + generator CPU per delivery: %.2f\n\n", n / c }'
    fi
    if [ -s "$WORK/netlabd-nagle.best" ] && [ -s "$WORK/ncat.best" ]; then
        awk -v n="$(cat "$WORK/netlabd-nagle.best")" -v c="$(cat "$WORK/ncat.best")" \
            'BEGIN { printf "netlabd with tcp_nodelay = false (Nagle, as ncat) / ncat: %.2f\n\n", n / c }'
    fi
    print_commands
} >"$REPORT"

publish_report "Room efficiency: server CPU per delivery, one message per write"
