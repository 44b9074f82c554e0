#!/usr/bin/env bash
# Compares netlabd's chat over its websocket dialect with tokio-tungstenite's
# own broadcast chat server (benches/src/tokio_ws_chat_server.rs: its
# examples/server.rs, speaking netlabd's JSON), under the same load from
# `netlab bench chat --dialect websocket`: one sender, 100 WebSocket
# readers by default.
#
# As benches/run-chat.sh: each server runs alone pinned to CPU 0, the
# generator to CPU 1; the servers take turns for ROUNDS rounds and each
# one's best round is reported (every round is listed). Prints a markdown
# table and the ratio netlabd/tokio-tungstenite, and appends both, with the
# date and the exact commands, to benches/results/websocket.md.
#
# Runs are kept under 2 x netlabd's ping_interval (30 s by default): the
# generator's readers never write, so netlabd would ping them, and the
# generator does not answer pings.
#
# Settings (environment): CLIENTS (100), SENDERS (1), SIZE (64), WINDOW (96),
# BATCH (32), DURATION (10, seconds), WARMUP (1), ROUNDS (3), SERVERS
# ("netlabd tokio"), CARGO_TARGET_DIR (where the release build goes).
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
SERVERS=${SERVERS:-netlabd tokio}
RESULTS=$ROOT/benches/results/websocket.md
NAME=run-websocket
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"

if [ $((WARMUP + DURATION)) -ge 55 ]; then
    echo "run-websocket: WARMUP + DURATION must stay under 55 s (netlabd pings silent readers every 30 s)" >&2
    exit 2
fi

wait_for_port() {
    local addr=$1
    for _ in $(seq 100); do
        if python3 -c 'import socket, sys; h, p = sys.argv[1].rsplit(":", 1); socket.create_connection((h, int(p)), 0.2).close()' "$addr" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "run-websocket: the server exited before listening on $addr" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "run-websocket: nothing listens on $addr after 10 s" >&2
    return 1
}

BENCH_ARGS=(--dialect websocket --clients "$CLIENTS" --senders "$SENDERS" --size "$SIZE" --window "$WINDOW"
    --batch "$BATCH" --duration "$DURATION" --warmup "$WARMUP" --json)
# Runs the load against ADDR; the JSON line goes to FILE, the server's CPU
# seconds over the measured window to FILE.cpu. Exit 1 only means problems
# were counted: they show in the table.
bench() {
    local addr=$1 file=$2 status=0
    with_server_cpu "$file.cpu" taskset -c "$CLIENT_CPU" "$BIN/netlab" bench chat "$addr" "${BENCH_ARGS[@]}" >"$file" || status=$?
    if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
        echo "run-websocket: the bench against $addr failed (exit $status)" >&2
        rm -f "$file"
        return 1
    fi
}

echo "run-websocket: building release binaries" >&2
cargo build --release --workspace --quiet

COMMANDS=()
ROWS=()

run_netlabd() {
    local port addr config
    port=$(free_port)
    addr="127.0.0.1:$port"
    config=$WORK/netlabd.toml
    cat >"$config" <<CONF
[[server]]
name = "chat"
service = "chat"
listen = [{ addr = "$addr", dialect = "websocket" }]
CONF
    echo "run-websocket: netlabd (chat, websocket dialect) on $addr, pinned to CPU $SERVER_CPU" >&2
    taskset -c "$SERVER_CPU" "$BIN/netlabd" --config "$config" 2>"$WORK/netlabd.log" &
    SERVER_PID=$!
    wait_for_port "$addr" || { cat "$WORK/netlabd.log" >&2; return 1; }
    bench "$addr" "$WORK/netlabd.$ROUND.json"
    stop_server
    [ "$ROUND" -eq 1 ] || return 0
    COMMANDS+=("taskset -c $SERVER_CPU netlabd --config netlabd.toml  # [[server]] service=\"chat\" listen=[{addr=\"$addr\", dialect=\"websocket\"}]")
    COMMANDS+=("taskset -c $CLIENT_CPU netlab bench chat $addr ${BENCH_ARGS[*]}")
}

run_tokio() {
    local addr=""
    echo "run-websocket: tokio-tungstenite chat server, pinned to CPU $SERVER_CPU" >&2
    taskset -c "$SERVER_CPU" "$BIN/tokio-ws-chat-server" --listen 127.0.0.1:0 >"$WORK/tokio.out" 2>"$WORK/tokio.log" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        addr=$(head -n 1 "$WORK/tokio.out" 2>/dev/null || true)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    if [ -z "$addr" ]; then
        echo "run-websocket: the tokio-tungstenite server printed no address" >&2
        cat "$WORK/tokio.log" >&2
        return 1
    fi
    bench "$addr" "$WORK/tokio.$ROUND.json"
    stop_server
    [ "$ROUND" -eq 1 ] || return 0
    COMMANDS+=("taskset -c $SERVER_CPU tokio-ws-chat-server --listen 127.0.0.1:0")
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

ns_per_delivery() {
    awk -v cpu="$(cat "$1.cpu")" -v rate="$(field "$1" deliveries_per_s)" -v d="$DURATION" \
        'BEGIN { if (rate > 0) printf "%.0f", cpu * 1e9 / (rate * d) }'
}

cpu_per_delivery() {
    awk -v ns="$(ns_per_delivery "$1")" -v cpu="$(cat "$1.cpu")" -v d="$DURATION" \
        'BEGIN { printf "%s (%.0f%%)", ns, cpu * 100 / d }'
}

for ROUND in $(seq "$ROUNDS"); do
    echo "run-websocket: round $ROUND of $ROUNDS" >&2
    for server in $SERVERS; do
        case $server in
            netlabd) run_netlabd ;;
            tokio) run_tokio ;;
            *) echo "run-websocket: unknown server $server (netlabd, tokio)" >&2; exit 2 ;;
        esac
    done
done
for server in $SERVERS; do
    case $server in
        netlabd) ROWS+=("$(row "netlabd (websocket)" netlabd)") ;;
        tokio) ROWS+=("$(row "tokio-tungstenite example" tokio)") ;;
    esac
done

ratio() {
    [ -s "$WORK/netlabd.json" ] && [ -s "$WORK/tokio.json" ] || return 0
    awk -v n="$(field "$WORK/netlabd.json" deliveries_per_s)" -v t="$(field "$WORK/tokio.json" deliveries_per_s)" \
        -v np="$(field "$WORK/netlabd.json" p50_us)" -v tp="$(field "$WORK/tokio.json" p50_us)" \
        'BEGIN { if (t > 0) printf "netlabd/tokio-tungstenite deliveries/s ratio: %.2f (p50 %.0f us vs %.0f us)\n", n / t, np, tp }'
    awk -v n="$(ns_per_delivery "$WORK/netlabd.json")" -v t="$(ns_per_delivery "$WORK/tokio.json")" \
        'BEGIN { if (n > 0) printf "tokio-tungstenite/netlabd server CPU per delivery (efficiency ratio): %.2f\n", t / n }'
}

REPORT=$WORK/report.md
{
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -srm), $(nproc --all) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "$CLIENTS WebSocket clients, $SENDERS sender(s) of $SIZE-byte messages, at most $WINDOW in flight per sender, written $BATCH at most at a time;"
    echo "${DURATION} s measured after ${WARMUP} s warmup; server pinned to CPU $SERVER_CPU, generator to CPU $CLIENT_CPU."
    echo "A delivery is one message received by one client; latencies in µs, send to receipt."
    echo "Each server's best of $ROUNDS interleaved rounds; the last column lists every round's deliveries/s."
    echo
    echo "| server | msgs sent/s | deliveries/s | p50 | p99 | lost | malformed | server CPU ns/delivery (busy) | rounds (deliveries/s) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    printf '%s\n' "${ROWS[@]}" | sed '/^$/d'
    echo
    ratio
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
[ -s "$RESULTS" ] || printf '# Chat over WebSocket: netlabd vs tokio-tungstenite'"'"'s chat example\n\nAppended by benches/run-websocket.sh, newest last.\n\n' >"$RESULTS"
cat "$REPORT" >>"$RESULTS"
echo "run-websocket: appended to ${RESULTS#"$ROOT"/}" >&2
plot_latest
