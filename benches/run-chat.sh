#!/usr/bin/env bash
# Compares netlabd's chat (line dialect) with `ncat -l --chat` (Debian's
# ncat, which writes each chunk it reads straight to every other client) and
# a plain tokio broadcast chat server (benches/src/tokio_chat_server.rs),
# all under the same load from `netlab bench chat`.
#
# Each server runs alone, pinned to CPU 0; the load generator is pinned to
# CPU 1, so server and generator never compete for a core and every server
# gets identical conditions. The servers run one after the other.
#
# Prints a markdown table and the ratios netlabd/ncat and netlabd/tokio, and
# appends both, with the date and the exact commands, to
# benches/results/chat.md.
#
# The servers take turns for ROUNDS rounds, and each one's best round is
# reported (all rounds are listed): on a shared machine another process that
# lands on a pinned CPU only ever slows a run down, so the best round is the
# one least disturbed, and taking turns spreads disturbances evenly.
#
# The sender streams: it keeps up to WINDOW messages in flight and writes at
# most BATCH at once, so with the defaults three batches are in flight and
# the server relays one while the receivers read another; a throughput bench
# must keep the server busy. WINDOW=32 BATCH=32 is the lock-step load, one
# batch at a time, where the generator's 100 reads per batch set the pace.
# Keep WINDOW*(SIZE+1) under 8 KiB: ncat reads 8 KiB at a time and puts its
# `<userN> ` prefix wherever a read ends, even inside a message.
#
# Settings (environment): CLIENTS (100), SENDERS (1), SIZE (64), WINDOW (96),
# BATCH (32), DURATION (10, in seconds), WARMUP (1), ROUNDS (3), SERVERS ("netlabd ncat
# tokio": run only some of them; "baseline" adds NETLABD_BASELINE, an older
# netlabd binary, to compare a change against), CARGO_TARGET_DIR (where the release build
# goes, default ./target).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

CLIENTS=${CLIENTS:-100}
SENDERS=${SENDERS:-1}
SIZE=${SIZE:-64}
WINDOW=${WINDOW:-96}
BATCH=${BATCH:-32}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
SERVERS=${SERVERS:-netlabd ncat tokio}
RESULTS=$ROOT/benches/results/chat.md
NAME=run-chat
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"

# Waits until something accepts connections on ADDR, or fails after 10 s.
wait_for_port() {
    local addr=$1
    for _ in $(seq 100); do
        if python3 -c 'import socket, sys; h, p = sys.argv[1].rsplit(":", 1); socket.create_connection((h, int(p)), 0.2).close()' "$addr" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "run-chat: the server exited before listening on $addr" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "run-chat: nothing listens on $addr after 10 s" >&2
    return 1
}

BENCH_ARGS=(--clients "$CLIENTS" --senders "$SENDERS" --size "$SIZE" --window "$WINDOW" --batch "$BATCH"
    --duration "$DURATION" --warmup "$WARMUP" --json)
# Runs the load against ADDR with extra arguments; the JSON line goes to
# FILE. Exit 1 only means problems were counted: they show in the table.
# The server's CPU seconds over the measured window go to FILE.cpu.
bench() {
    local addr=$1 file=$2 status=0
    shift 2
    with_server_cpu "$file.cpu" taskset -c "$CLIENT_CPU" "$BIN/netlab" bench chat "$addr" "${BENCH_ARGS[@]}" "$@" >"$file" || status=$?
    if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
        echo "run-chat: the bench against $addr failed (exit $status)" >&2
        rm -f "$file"
        return 1
    fi
}

echo "run-chat: building release binaries" >&2
cargo build --release --workspace --quiet

COMMANDS=()
ROWS=()
NOTES=()

# Runs netlabd from BINARY (default: this tree's) under KEY (default netlabd).
run_netlabd() {
    local key=${1:-netlabd} binary=${2:-$BIN/netlabd} port config addr
    port=$(free_port)
    addr="127.0.0.1:$port"
    config=$WORK/netlabd.toml
    cat >"$config" <<CONF
[[server]]
name = "chat"
service = "chat"
listen = [{ addr = "$addr", dialect = "line" }]
CONF
    echo "run-chat: netlabd (chat, line dialect) on $addr, pinned to CPU $SERVER_CPU" >&2
    taskset -c "$SERVER_CPU" "$binary" --config "$config" 2>"$WORK/$key.log" &
    SERVER_PID=$!
    wait_for_port "$addr" || { cat "$WORK/$key.log" >&2; return 1; }
    bench "$addr" "$WORK/$key.$ROUND.json"
    stop_server
    [ "$ROUND" -eq 1 ] || return 0
    COMMANDS+=("taskset -c $SERVER_CPU $binary --config netlabd.toml  # [[server]] service=\"chat\" listen=[{addr=\"$addr\", dialect=\"line\"}]")
    COMMANDS+=("taskset -c $CLIENT_CPU netlab bench chat $addr ${BENCH_ARGS[*]}")
}

have_ncat() {
    command -v ncat >/dev/null 2>&1 && return 0
    echo "run-chat: ncat is missing; installing it (apt-get install ncat)" >&2
    if { apt-get update && apt-get install -y ncat; } >"$WORK/apt.log" 2>&1 && command -v ncat >/dev/null 2>&1; then
        return 0
    fi
    tail -n 5 "$WORK/apt.log" >&2
    return 1
}

run_ncat() {
    local port addr
    if ! have_ncat; then
        [ "$ROUND" -eq 1 ] && NOTES+=("ncat skipped: it is not installed and apt-get install ncat failed")
        echo "run-chat: ncat skipped: not installed, and apt-get install ncat failed" >&2
        return 0
    fi
    port=$(free_port)
    addr="127.0.0.1:$port"
    # --max-conns: ncat's default of 100 counts every client; the room
    # must hold all of them.
    local max=$((CLIENTS + 10))
    echo "run-chat: $(ncat --version 2>&1 | head -n 1) --chat on $addr, pinned to CPU $SERVER_CPU" >&2
    taskset -c "$SERVER_CPU" ncat -l --chat --max-conns "$max" 127.0.0.1 "$port" </dev/null >/dev/null 2>"$WORK/ncat.log" &
    SERVER_PID=$!
    wait_for_port "$addr" || { cat "$WORK/ncat.log" >&2; return 1; }
    bench "$addr" "$WORK/ncat.$ROUND.json" --protocol ncat
    stop_server
    [ "$ROUND" -eq 1 ] || return 0
    COMMANDS+=("taskset -c $SERVER_CPU ncat -l --chat --max-conns $max 127.0.0.1 $port")
    COMMANDS+=("taskset -c $CLIENT_CPU netlab bench chat $addr ${BENCH_ARGS[*]} --protocol ncat")
}

run_tokio() {
    local addr=""
    echo "run-chat: tokio chat server, pinned to CPU $SERVER_CPU" >&2
    taskset -c "$SERVER_CPU" "$BIN/tokio-chat-server" --listen 127.0.0.1:0 >"$WORK/tokio.out" 2>"$WORK/tokio.log" &
    SERVER_PID=$!
    # Its first line on stdout is the address it bound.
    for _ in $(seq 100); do
        addr=$(head -n 1 "$WORK/tokio.out" 2>/dev/null || true)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    if [ -z "$addr" ]; then
        echo "run-chat: the tokio server printed no address" >&2
        cat "$WORK/tokio.log" >&2
        return 1
    fi
    bench "$addr" "$WORK/tokio.$ROUND.json"
    stop_server
    [ "$ROUND" -eq 1 ] || return 0
    COMMANDS+=("taskset -c $SERVER_CPU tokio-chat-server --listen 127.0.0.1:0")
    COMMANDS+=("taskset -c $CLIENT_CPU netlab bench chat $addr ${BENCH_ARGS[*]}")
}

row() {
    local label=$1 name=$2 rounds
    rounds=$(best_of "$name" deliveries_per_s)
    local file=$WORK/$name.json
    [ -s "$file" ] || return 0
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |' "$label" \
        "$(field "$file" sent_per_s)" "$(field "$file" deliveries_per_s)" \
        "$(field "$file" p50_us)" "$(field "$file" p99_us)" \
        "$(field "$file" lost)" "$(field "$file" malformed)" "$(cpu_per_delivery "$file")" "${rounds// /, }"
}

# Server CPU ns per delivery over the measured window.
ns_per_delivery() {
    awk -v cpu="$(cat "$1.cpu")" -v rate="$(field "$1" deliveries_per_s)" -v d="$DURATION" \
        'BEGIN { if (rate > 0) printf "%.0f", cpu * 1e9 / (rate * d) }'
}

# The same, and how busy the server's core was.
cpu_per_delivery() {
    awk -v ns="$(ns_per_delivery "$1")" -v cpu="$(cat "$1.cpu")" -v d="$DURATION" \
        'BEGIN { printf "%s (%.0f%%)", ns, cpu * 100 / d }'
}

for ROUND in $(seq "$ROUNDS"); do
    echo "run-chat: round $ROUND of $ROUNDS" >&2
    for server in $SERVERS; do
        case $server in
            netlabd) run_netlabd ;;
            baseline)
                [ -x "${NETLABD_BASELINE:-}" ] || { echo "run-chat: baseline needs NETLABD_BASELINE, an older netlabd binary" >&2; exit 2; }
                run_netlabd baseline "$NETLABD_BASELINE" ;;
            ncat) run_ncat ;;
            tokio) run_tokio ;;
            *) echo "run-chat: unknown server $server (netlabd, baseline, ncat, tokio)" >&2; exit 2 ;;
        esac
    done
done
for server in $SERVERS; do
    case $server in
        netlabd) ROWS+=("$(row "netlabd (line)" netlabd)") ;;
        baseline) ROWS+=("$(row "netlabd baseline ($NETLABD_BASELINE)" baseline)") ;;
        ncat) ROWS+=("$(row "ncat --chat" ncat)") ;;
        tokio) ROWS+=("$(row "tokio broadcast" tokio)") ;;
    esac
done

# "netlabd/PEER deliveries/s ratio: R (p50 X us vs Y us)"
ratio() {
    local peer=$1 file=$2
    [ -s "$WORK/netlabd.json" ] && [ -s "$file" ] || return 0
    awk -v n="$(field "$WORK/netlabd.json" deliveries_per_s)" -v t="$(field "$file" deliveries_per_s)" \
        -v np="$(field "$WORK/netlabd.json" p50_us)" -v tp="$(field "$file" p50_us)" -v peer="$peer" \
        'BEGIN { if (t > 0) printf "netlabd/%s deliveries/s ratio: %.2f (p50 %.0f us vs %.0f us)\n", peer, n / t, np, tp }'
    awk -v n="$(ns_per_delivery "$WORK/netlabd.json")" -v t="$(ns_per_delivery "$file")" -v peer="$peer" \
        'BEGIN { if (n > 0) printf "%s/netlabd server CPU per delivery (efficiency ratio): %.2f\n", peer, t / n }'
}

REPORT=$WORK/report.md
{
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -srm), $(nproc --all) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "$CLIENTS clients, $SENDERS sender(s) of $SIZE-byte messages, at most $WINDOW in flight per sender, written $BATCH at most at a time;"
    echo "${DURATION} s measured after ${WARMUP} s warmup; server pinned to CPU $SERVER_CPU, generator to CPU $CLIENT_CPU."
    echo "A delivery is one message received by one client; latencies in µs, send to receipt."
    echo "Each server's best of $ROUNDS interleaved rounds; the last column lists every round's deliveries/s."
    echo
    echo "| server | msgs sent/s | deliveries/s | p50 | p99 | lost | malformed | server CPU ns/delivery (busy) | rounds (deliveries/s) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    printf '%s\n' "${ROWS[@]}" | sed '/^$/d'
    echo
    ratio ncat "$WORK/ncat.json"
    ratio tokio "$WORK/tokio.json"
    for note in "${NOTES[@]}"; do echo "$note"; done
    echo
    echo "Commands:"
    echo
    echo '```'
    printf '%s\n' "${COMMANDS[@]}"
    echo '```'
    echo
} >"$REPORT"

cat "$REPORT"
mkdir -p "$(dirname "$RESULTS")"
[ -s "$RESULTS" ] || printf '# Chat: netlabd vs ncat --chat vs tokio broadcast\n\nAppended by benches/run-chat.sh, newest last.\n\n' >"$RESULTS"
cat "$REPORT" >>"$RESULTS"
echo "run-chat: appended to ${RESULTS#"$ROOT"/}" >&2
plot_latest  # benches/results/chat.svg
