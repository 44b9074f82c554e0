#!/usr/bin/env bash
# One chat room on one node against the same room across two nodes that
# share a redis-server (issue 12's "Done means"): 1 sender -> 100 readers
# from `netlab bench chat`, in the same run.
#
#   single     one netlabd, no cluster: the room as users have it today
#   clustered  the same netlabd as one node of a cluster, every reader on
#              it (what publishing to Redis costs a node on its own)
#   two-nodes  two netlabd nodes and the redis-server; the sender and half
#              the readers on node A, the other half on node B (netlab bench
#              chat A B deals the readers to each in turn)
#
# Everything on the server side (netlabd, the second netlabd, redis-server)
# is pinned to CPU 0 and the generator to CPU 1, so the server side has the
# same one core in every setup: two nodes on one machine pay for Redis and
# for a second event loop out of it. Server CPU is summed over every server
# process over the measured window.
#
# The setups take turns for ROUNDS rounds; each one's best round (by
# deliveries/s) is reported and every round listed. Prints a markdown table,
# the two-nodes/single ratios that the target names (at least 0.8x the
# deliveries/s, at most 1 ms more median latency), and appends both, with
# the date and the exact commands, to benches/results/cluster.md.
#
# Settings (environment): CLIENTS (101: a sender and 100 readers), SENDERS
# (1), SIZE (64), WINDOW (96), BATCH (32), DURATION (10, in seconds), WARMUP
# (1), ROUNDS (3), SETUPS ("single clustered two-nodes"), CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

CLIENTS=${CLIENTS:-101}
SENDERS=${SENDERS:-1}
SIZE=${SIZE:-64}
WINDOW=${WINDOW:-96}
BATCH=${BATCH:-32}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
SETUPS=${SETUPS:-single clustered two-nodes}
RESULTS=$ROOT/benches/results/cluster.md
NAME=run-cluster
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"

# Every server process of the setup running now (SERVER_PID is the first).
PIDS=()
REDIS_PID=""
stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    SERVER_PID=""
}
stop_redis() {
    if [ -n "$REDIS_PID" ]; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=""
    fi
}
trap 'stop_all; stop_redis; rm -rf "$WORK"' EXIT

need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "$NAME: $1 is missing; installing $2 (apt-get install $2)" >&2
    if { apt-get -o DPkg::Lock::Timeout=600 update && apt-get -o DPkg::Lock::Timeout=600 install -y "$2"; } >"$WORK/apt.log" 2>&1 \
        && command -v "$1" >/dev/null 2>&1; then
        return 0
    fi
    tail -n 5 "$WORK/apt.log" >&2
    echo "$NAME: $1 is needed and could not be installed" >&2
    exit 1
}

# Waits until the log LOG of PID has a line with TEXT, or fails after 10 s.
wait_for_log() {
    local pid=$1 log=$2 text=$3
    for _ in $(seq 100); do
        grep -q "$text" "$log" 2>/dev/null && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$NAME: a server exited before saying \"$text\":" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "$NAME: no \"$text\" from a server after 10 s:" >&2
    cat "$log" >&2
    return 1
}

# Starts netlabd KEY on a free port, with CLUSTER (a cluster table, or
# empty); ADDR_<KEY> is its address.
start_netlabd() {
    local key=$1 cluster=$2 port config
    port=$(free_port)
    config=$WORK/$key.toml
    {
        echo '[[server]]'
        echo 'name = "chat"'
        echo 'service = "chat"'
        echo "listen = [{ addr = \"127.0.0.1:$port\", dialect = \"line\" }]"
        [ -z "$cluster" ] || echo "cluster = $cluster"
    } >"$config"
    taskset -c "$SERVER_CPU" "$BIN/netlabd" --config "$config" 2>"$WORK/$key.log" &
    PIDS+=($!)
    [ -n "$SERVER_PID" ] || SERVER_PID=$!
    printf -v "ADDR_$key" '%s' "127.0.0.1:$port"
    if [ -n "$cluster" ]; then
        wait_for_log "$!" "$WORK/$key.log" "linked through"
    else
        wait_for_log "$!" "$WORK/$key.log" "listening on"
    fi
}

# Runs COMMAND... and writes the CPU seconds of every server process over
# the measured window to CPU_FILE (see with_server_cpu in common.sh).
with_servers_cpu() {
    local cpu_file=$1 pid before=0 after=0 status=0 p
    shift
    "$@" &
    pid=$!
    sleep "$WARMUP"
    for p in "${PIDS[@]}" $REDIS_PID; do before=$((before + $(cpu_ticks "$p"))); done
    sleep "$DURATION"
    for p in "${PIDS[@]}" $REDIS_PID; do after=$((after + $(cpu_ticks "$p"))); done
    wait "$pid" || status=$?
    awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f\n", t / hz }' >"$cpu_file"
    return "$status"
}

BENCH_ARGS=(--clients "$CLIENTS" --senders "$SENDERS" --size "$SIZE" --window "$WINDOW" --batch "$BATCH"
    --duration "$DURATION" --warmup "$WARMUP" --json)
# The load against ADDRS (one word each); the JSON line goes to FILE.
# Exit 1 only means problems were counted: they show in the table.
bench() {
    local file=$1 status=0
    shift
    with_servers_cpu "$file.cpu" taskset -c "$CLIENT_CPU" "$BIN/netlab" bench chat "$@" "${BENCH_ARGS[@]}" >"$file" || status=$?
    if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
        echo "$NAME: the bench against $* failed (exit $status)" >&2
        rm -f "$file"
        return 1
    fi
}

need redis-server redis-server
echo "$NAME: building release binaries" >&2
cargo build --release -p netlab-daemon --quiet

REDIS_PORT=$(free_port)
taskset -c "$SERVER_CPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$WORK" --logfile "$WORK/redis.log" &
REDIS_PID=$!
for _ in $(seq 100); do
    python3 -c 'import socket, sys; s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2); s.sendall(b"PING\r\n"); sys.exit(0 if s.recv(7).startswith(b"+PONG") else 1)' "$REDIS_PORT" 2>/dev/null && break
    sleep 0.1
done
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
echo "$NAME: $(redis-server --version | cut -d' ' -f1-3) on $REDIS_URL, pinned to CPU $SERVER_CPU" >&2

COMMANDS=()
NOTES=()
cluster_of() {
    echo "{ redis = \"$REDIS_URL\", room = \"bench$ROUND\", node = \"$1\" }"
}

run_setup() {
    local setup=$1
    case $setup in
        single)
            start_netlabd a ""
            bench "$WORK/single.$ROUND.json" "$ADDR_a"
            ;;
        clustered)
            start_netlabd a "$(cluster_of node-a)"
            bench "$WORK/clustered.$ROUND.json" "$ADDR_a"
            ;;
        two-nodes)
            start_netlabd a "$(cluster_of node-a)"
            start_netlabd b "$(cluster_of node-b)"
            bench "$WORK/two-nodes.$ROUND.json" "$ADDR_a" "$ADDR_b"
            ;;
        *)
            echo "$NAME: unknown setup $setup (single, clustered, two-nodes)" >&2
            exit 2
            ;;
    esac
    stop_all
    [ "$ROUND" -eq 1 ] || return 0
    case $setup in
        single) COMMANDS+=("taskset -c $SERVER_CPU netlabd --config a.toml  # [[server]] service=\"chat\" listen=[{addr=\"$ADDR_a\", dialect=\"line\"}]"
            "taskset -c $CLIENT_CPU netlab bench chat $ADDR_a ${BENCH_ARGS[*]}") ;;
        clustered) COMMANDS+=("taskset -c $SERVER_CPU netlabd --config a.toml  # the same, and cluster = $(cluster_of node-a)"
            "taskset -c $CLIENT_CPU netlab bench chat $ADDR_a ${BENCH_ARGS[*]}") ;;
        two-nodes) COMMANDS+=("taskset -c $SERVER_CPU netlabd --config a.toml  # node A: listen=[\"$ADDR_a\"], cluster = $(cluster_of node-a)"
            "taskset -c $SERVER_CPU netlabd --config b.toml  # node B: listen=[\"$ADDR_b\"], cluster = $(cluster_of node-b)"
            "taskset -c $CLIENT_CPU netlab bench chat $ADDR_a $ADDR_b ${BENCH_ARGS[*]}") ;;
    esac
}

for ROUND in $(seq "$ROUNDS"); do
    echo "$NAME: round $ROUND of $ROUNDS" >&2
    for setup in $SETUPS; do
        run_setup "$setup"
    done
done

# Server CPU ns per delivery over the measured window, and how busy CPU 0 was.
cpu_per_delivery() {
    awk -v cpu="$(cat "$1.cpu")" -v rate="$(field "$1" deliveries_per_s)" -v d="$DURATION" \
        'BEGIN { if (rate > 0) printf "%.0f (%.0f%%)", cpu * 1e9 / (rate * d), cpu * 100 / d }'
}

ROWS=()
for setup in $SETUPS; do
    rounds=$(best_of "$setup" deliveries_per_s)
    file=$WORK/$setup.json
    [ -s "$file" ] || continue
    ROWS+=("$(printf '| %s | %s | %s | %s | %s | %s | %s | %s |' "$setup" \
        "$(field "$file" sent_per_s)" "$(field "$file" deliveries_per_s)" \
        "$(field "$file" p50_us)" "$(field "$file" p99_us)" "$(field "$file" lost)" \
        "$(cpu_per_delivery "$file")" "${rounds// /, }")")
done

target() {
    local single=$WORK/single.json two=$WORK/two-nodes.json
    [ -s "$single" ] && [ -s "$two" ] || return 0
    awk -v s="$(field "$single" deliveries_per_s)" -v t="$(field "$two" deliveries_per_s)" \
        -v sp="$(field "$single" p50_us)" -v tp="$(field "$two" p50_us)" 'BEGIN {
            ratio = t / s; extra = tp - sp
            printf "two-nodes/single deliveries/s: %.2fx (target at least 0.80x: %s)\n", ratio, (ratio >= 0.8 ? "met" : "missed")
            printf "two-nodes median latency: %+.0f us against single (target at most +1000 us: %s)\n", extra, (extra <= 1000 ? "met" : "missed")
        }'
}

REPORT=$WORK/report.md
{
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -srm), $(nproc --all) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "$CLIENTS clients ($SENDERS sender(s) of $SIZE-byte messages, the rest reading), at most $WINDOW in flight per sender, written $BATCH at most at a time;"
    echo "${DURATION} s measured after ${WARMUP} s warmup; every server process (netlabd nodes, redis-server) pinned to CPU $SERVER_CPU, the generator to CPU $CLIENT_CPU."
    echo "A delivery is one message received by one client; latencies in µs, send to receipt. Server CPU sums every server process."
    echo "Each setup's best of $ROUNDS interleaved rounds; the last column lists every round's deliveries/s."
    echo
    echo "| setup | msgs sent/s | deliveries/s | p50 | p99 | lost | server CPU ns/delivery (CPU $SERVER_CPU busy) | rounds (deliveries/s) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    printf '%s\n' "${ROWS[@]}" | sed '/^$/d'
    echo
    target
    for note in "${NOTES[@]}"; do echo "$note"; done
    echo
    echo "Commands (redis-server --bind 127.0.0.1 --port $REDIS_PORT --save '' --appendonly no, pinned to CPU $SERVER_CPU, for the clustered setups):"
    echo
    echo '```'
    printf '%s\n' "${COMMANDS[@]}"
    echo '```'
    echo
} >"$REPORT"

publish_report "Chat across nodes: one netlabd against two sharing a redis-server"
