#!/usr/bin/env bash
# Where the room's CPU per delivery goes (benches/run-room-cpu.sh's load):
# for netlabd at its default, netlabd with tcp_nodelay = false, and
# `ncat -l --chat`, the server's wake-ups (epoll_wait / pselect6) and
# sendto calls per second, counted by `perf stat -I 1000` over whole seconds
# inside chat_flood's measured window, beside chat_flood's deliveries/s and
# server CPU: messages per send and CPU per send. CPU per delivery is CPU
# per send divided by messages per send; this shows which of the two
# differs. Needs perf (linux-perf) and ncat; server on CPU 0, generator on
# CPU 1. Prints a markdown table.
#
# Settings (environment): ROUNDS (1), DURATION (10), SERVERS ("netlabd
# netlabd-nagle ncat").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-1}
DURATION=${DURATION:-10}
SERVERS=${SERVERS:-netlabd netlabd-nagle ncat}
for tool in perf ncat python3 gcc taskset; do
    command -v "$tool" >/dev/null || { echo "run-room-sends: $tool is missing" >&2; exit 2; }
done
[ "$DURATION" -ge 4 ] || { echo "run-room-sends: DURATION must be at least 4 s" >&2; exit 2; }

NAME=run-room-sends
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"
cargo build --release --quiet -p netlab-daemon --bin netlabd
gcc -O2 -Wall -Wextra -Werror -o "$WORK/chat_flood" benches/c/chat_flood.c
EVENTS=syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_pselect6

one() {
    local name=$1 port login perf_pid pid t0 t1
    port=$(free_port)
    case $name in
    netlabd | netlabd-nagle)
        {
            echo '[[server]]'
            echo 'name = "chat"'
            echo 'service = "chat"'
            echo "listen = [{ addr = \"127.0.0.1:$port\", dialect = \"line\" }]"
            [ "$name" = netlabd-nagle ] && echo 'tcp_nodelay = false'
        } >"$WORK/$name.toml"
        perf stat -I 1000 -x, -o "$WORK/$name.perf" -e "$EVENTS" -- \
            taskset -c "$SERVER_CPU" "$BIN/netlabd" --config "$WORK/$name.toml" 2>/dev/null &
        login=line ;;
    ncat)
        perf stat -I 1000 -x, -o "$WORK/$name.perf" -e "$EVENTS" -- \
            taskset -c "$SERVER_CPU" ncat -l --chat --max-conns 111 127.0.0.1 "$port" </dev/null >/dev/null 2>&1 &
        login=none ;;
    *) echo "run-room-sends: unknown server $name" >&2; exit 2 ;;
    esac
    perf_pid=$!
    sleep 1
    # taskset execs the server: perf's child is it.
    pid=$(pgrep -n -P "$perf_pid")
    t0=$(date +%s.%N)
    taskset -c "$CLIENT_CPU" "$WORK/chat_flood" 127.0.0.1 "$port" 101 96 64 1 "$DURATION" "$login" "$pid" >"$WORK/$name.json"
    t1=$(date +%s.%N)
    kill -INT "$pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    python3 - "$WORK" "$name" "$t0" "$t1" "$DURATION" <<'PY'
import collections, json, sys
work, name, t0, t1, duration = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
flood = json.load(open(f"{work}/{name}.json"))
counts = collections.defaultdict(dict)
for line in open(f"{work}/{name}.perf"):
    fields = line.split(",")
    if line.startswith("#") or len(fields) < 4:
        continue
    try:
        counts[float(fields[0])][fields[3].split(":")[-1]] = float(fields[1])
    except ValueError:
        pass
# perf's clock starts a second before t0; the flood's window is its last
# DURATION seconds: keep the intervals that end inside it, less a second
# at each edge.
span = t1 - t0 + 1.0
window = [t for t in counts if span - duration + 2.0 <= t <= span - 1.0]
if not window:
    sys.exit(f"run-room-sends: no whole second of {name}'s window in perf's intervals")
avg = lambda k: sum(counts[t].get(k, 0) for t in window) / len(window)
sends = avg("sys_enter_sendto")
wakes = avg("sys_enter_epoll_wait") + avg("sys_enter_pselect6")
rate = flood["deliveries_per_s"]
cpu = flood["server_cpu_s"] / duration
both = (flood["server_cpu_s"] + flood["generator_cpu_s"]) / duration
print(f"| {name} | {rate / 1e6:.2f}M | {cpu * 1e9 / rate:.0f} ns | {wakes:,.0f} | {sends:,.0f} "
      f"| {rate / sends:.1f} | {cpu * 1e6 / sends:.2f} µs | {both * 1e9 / rate:.0f} ns |")
PY
}

echo "| server | deliveries/s | server CPU per delivery | wakes/s | sends/s | messages per send | server CPU per send | server + generator CPU per delivery |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for _ in $(seq "$ROUNDS"); do
    for server in $SERVERS; do
        one "$server"
    done
done
