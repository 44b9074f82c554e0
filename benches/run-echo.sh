#!/usr/bin/env bash
# Compares netlabd's event-model TCP echo with a plain tokio echo server
# (benches/src/tokio_echo_server.rs) under the same closed-loop load, and
# shows both against the floor: benches/c/epoll_echo_floor.c, the least an
# epoll server can do per request (one recv, one send, nothing else), which
# no epoll server can beat by more than its own user-space share.
#
# Each server runs alone, pinned to CPU 0; the load generator, `netlab bench
# echo`, is pinned to CPU 1, so the server and the generator never compete
# for a core and the servers get identical conditions. The servers run one
# after the other, never two at once, taking turns for ROUNDS rounds; each
# one's best round is reported (all rounds are listed): on a shared machine
# a disturbance only ever slows a run down, and this machine's speed drifts
# by a quarter from minute to minute, so single runs compare luck.
#
# Prints a markdown table and the netlabd/tokio ratio, and appends both,
# with the date and the exact commands, to benches/results/echo.md.
#
# Settings (environment): CONNECTIONS (100), SIZE (64), DURATION (10, in
# seconds), WARMUP (1), ROUNDS (3), SERVERS ("netlabd tokio floor": run only some of
# them; "baseline" adds NETLABD_BASELINE, an older netlabd binary, to compare
# a change against), CARGO_TARGET_DIR (where the release build goes, default ./target),
# CC (the C compiler for the floor, default cc).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

CONNECTIONS=${CONNECTIONS:-100}
SIZE=${SIZE:-64}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
SERVERS=${SERVERS:-netlabd tokio floor}
RESULTS=$ROOT/benches/results/echo.md
NAME=run-echo
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"

# Waits until ADDR echoes, or fails after 10 s.
wait_for_echo() {
    local addr=$1
    for _ in $(seq 100); do
        if "$BIN/netlab" echo --timeout 200ms "$addr" ready >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "run-echo: the server exited before serving $addr" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "run-echo: $addr did not echo within 10 s" >&2
    return 1
}

# Runs the load against ADDR; the bench's JSON line goes to FILE.
BENCH_ARGS=(--connections "$CONNECTIONS" --size "$SIZE" --duration "$DURATION" --warmup "$WARMUP" --json)
# Exit 1 only means errors were counted: they show in the table. The
# server's CPU seconds over the measured window go to FILE.cpu.
bench() {
    local addr=$1 file=$2 status=0
    with_server_cpu "$file.cpu" taskset -c "$CLIENT_CPU" "$BIN/netlab" bench echo "$addr" "${BENCH_ARGS[@]}" >"$file" || status=$?
    if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
        echo "run-echo: the bench against $addr failed (exit $status)" >&2
        return 1
    fi
}

# Server CPU µs per request over the measured window.
cpu_per_request() {
    awk -v cpu="$(cat "$1.cpu")" -v rps="$(field "$1" requests_per_s)" -v d="$DURATION" \
        'BEGIN { if (rps > 0) printf "%.2f", cpu * 1e6 / (rps * d) }'
}

echo "run-echo: building release binaries" >&2
cargo build --release --workspace --quiet
FLOOR=$WORK/epoll-echo-floor
case " $SERVERS " in
    *" floor "*) "${CC:-cc}" -O2 -Wall -Wextra -Werror -std=c11 -o "$FLOOR" benches/c/epoll_echo_floor.c ;;
esac

COMMANDS=()
ROWS=()

# Runs netlabd from BINARY (default: this tree's) under KEY (default netlabd).
run_netlabd() {
    local key=${1:-netlabd} binary=${2:-$BIN/netlabd} port config addr
    port=$(free_port)
    addr="127.0.0.1:$port"
    config=$WORK/netlabd.toml
    cat >"$config" <<EOF
[[server]]
name = "echo"
service = "echo"
transport = "tcp"
listen = ["$addr"]
model = "event"
EOF
    echo "run-echo: netlabd (event model) on $addr, pinned to CPU $SERVER_CPU" >&2
    taskset -c "$SERVER_CPU" "$binary" --config "$config" 2>"$WORK/$key.log" &
    SERVER_PID=$!
    wait_for_echo "$addr" || { cat "$WORK/$key.log" >&2; return 1; }
    bench "$addr" "$WORK/$key.$ROUND.json"
    stop_server
    [ "$ROUND" -eq 1 ] || return 0
    COMMANDS+=("taskset -c $SERVER_CPU $binary --config netlabd.toml  # [[server]] service=\"echo\" transport=\"tcp\" model=\"event\" listen=[\"$addr\"]")
    COMMANDS+=("taskset -c $CLIENT_CPU netlab bench echo $addr ${BENCH_ARGS[*]}")
}

# Runs a peer that binds port 0 itself and prints its address as the first
# line on stdout: KEY names its files, SHOWN is the command as recorded.
run_peer() {
    local key=$1 shown=$2 addr
    shift 2
    echo "run-echo: $shown, pinned to CPU $SERVER_CPU" >&2
    taskset -c "$SERVER_CPU" "$@" >"$WORK/$key.out" 2>"$WORK/$key.log" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        addr=$(head -n 1 "$WORK/$key.out" 2>/dev/null || true)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    if [ -z "$addr" ]; then
        echo "run-echo: $shown printed no address" >&2
        cat "$WORK/$key.log" >&2
        return 1
    fi
    wait_for_echo "$addr"
    bench "$addr" "$WORK/$key.$ROUND.json"
    stop_server
    [ "$ROUND" -eq 1 ] || return 0
    COMMANDS+=("taskset -c $SERVER_CPU $shown")
    COMMANDS+=("taskset -c $CLIENT_CPU netlab bench echo $addr ${BENCH_ARGS[*]}")
}

row() {
    local label=$1 key=$2 rounds file
    rounds=$(best_of "$key" requests_per_s)
    file=$WORK/$key.json
    [ -s "$file" ] || return 0
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |' "$label" \
        "$(field "$file" requests_per_s)" "$(field "$file" mb_per_s_each_way)" \
        "$(field "$file" p50_us)" "$(field "$file" p99_us)" "$(field "$file" p999_us)" \
        "$(field "$file" errors)" "$(cpu_per_request "$file")" "${rounds// /, }"
}

for server in $SERVERS; do
    case $server in
        netlabd | tokio | floor) ;;
        baseline) [ -x "${NETLABD_BASELINE:-}" ] || { echo "run-echo: baseline needs NETLABD_BASELINE, an older netlabd binary" >&2; exit 2; } ;;
        *) echo "run-echo: unknown server $server (netlabd, baseline, tokio, floor)" >&2; exit 2 ;;
    esac
done
for ROUND in $(seq "$ROUNDS"); do
    echo "run-echo: round $ROUND of $ROUNDS" >&2
    for server in $SERVERS; do
        case $server in
            netlabd) run_netlabd ;;
            baseline) run_netlabd baseline "$NETLABD_BASELINE" ;;
            tokio) run_peer tokio "tokio-echo-server --listen 127.0.0.1:0" "$BIN/tokio-echo-server" --listen 127.0.0.1:0 ;;
            floor) run_peer floor "epoll-echo-floor  # cc -O2 benches/c/epoll_echo_floor.c" "$FLOOR" ;;
        esac
    done
done
for server in $SERVERS; do
    case $server in
        netlabd) ROWS+=("$(row "netlabd (event)" netlabd)") ;;
        baseline) ROWS+=("$(row "netlabd baseline ($NETLABD_BASELINE)" baseline)") ;;
        tokio) ROWS+=("$(row "tokio echo" tokio)") ;;
        floor) ROWS+=("$(row "floor (C, epoll)" floor)") ;;
    esac
done

REPORT=$WORK/report.md
{
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -srm), $(nproc --all) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "$CONNECTIONS connections, $SIZE-byte requests, ${DURATION} s measured after ${WARMUP} s warmup;"
    echo "server pinned to CPU $SERVER_CPU, generator to CPU $CLIENT_CPU. MB/s is payload each way; latencies in µs."
    echo "Each server's best of $ROUNDS interleaved rounds; the last column lists every round's requests/s."
    echo
    echo "| server | req/s | MB/s | p50 | p99 | p99.9 | errors | server CPU µs/req | rounds (req/s) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    printf '%s\n' "${ROWS[@]}" | sed '/^$/d'
    if [ -s "$WORK/netlabd.json" ] && [ -s "$WORK/tokio.json" ]; then
        echo
        awk -v n="$(field "$WORK/netlabd.json" requests_per_s)" -v t="$(field "$WORK/tokio.json" requests_per_s)" \
            'BEGIN { if (t > 0) printf "netlabd/tokio throughput ratio: %.2f\n", n / t }'
        awk -v n="$(cpu_per_request "$WORK/netlabd.json")" -v t="$(cpu_per_request "$WORK/tokio.json")" \
            'BEGIN { if (n > 0) printf "tokio/netlabd server CPU per request (efficiency ratio): %.2f\n", t / n }'
    fi
    if [ -s "$WORK/floor.json" ]; then
        for key in netlabd tokio; do
            [ -s "$WORK/$key.json" ] || continue
            awk -v k="$key" -v f="$(field "$WORK/floor.json" requests_per_s)" -v r="$(field "$WORK/$key.json" requests_per_s)" \
                'BEGIN { if (f > 0) printf "%s reaches %.0f%% of the floor'"'"'s requests/s\n", k, 100 * r / f }'
        done
    fi
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
[ -s "$RESULTS" ] || printf '# Echo: netlabd vs tokio\n\nAppended by benches/run-echo.sh, newest last.\n\n' >"$RESULTS"
cat "$REPORT" >>"$RESULTS"
echo "run-echo: appended to ${RESULTS#"$ROOT"/}" >&2
plot_latest  # benches/results/echo.svg
