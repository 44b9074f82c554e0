#!/usr/bin/env bash
# benches/soak.sh MINUTES: holds 10,000 connections against one
# release-built netlabd for MINUTES and fails if it grows, loses or garbles
# a byte or a message, or logs a warning or an error.
#
# The load (netlab-soak, benches/src/soak/, one process, two mio threads):
#   - 7,800 TCP connections to an event-model echo server (IPv4 and, when
#     the machine has it, IPv6), each sending messages of 1 B to 256 KiB
#     at random and checking every byte that comes back;
#   - 100 each to a thread-model and a fork-model echo server;
#   - a chat room of 2,000 members over its three dialects (line, header
#     with header_len 10, bincode): a tenth of them talk, 10 messages a
#     second in all, everyone checks every message (text, each sender's
#     order, nothing missing) and asks who is online every 4 minutes or so;
#   - 64 UDP echo flows;
#   - churn: echo connections close and reopen (40/s event, 2/s thread and
#     fork; four in five close cleanly and must get every byte back first,
#     one in five resets), chat members leave and join (3/s, by Bye,
#     half-close or reset), a UDP flow a second;
#   - a reload every 30 s: the configuration alternates between two
#     variants that differ only in a `flip` echo server (changed, so
#     restarted on its port) and a `probe` count server (added, removed);
#     the servers under load are the same in both and must not notice;
#   - netlabd's RSS, open descriptors, threads and child processes sampled
#     every 10 s into a CSV;
#   - netlabd's /metrics endpoint on, as an operator runs it: at the end
#     its byte counters must show every echo server's traffic (the fork
#     model's counted by its children).
# At the end every connection closes cleanly and is checked whole, and
# netlabd, back on its first configuration, must hold exactly the
# descriptors, threads and children (none) it held before the load.
#
# Judged (any one fails the soak, exit 1):
#   - the generator's checks: a lost or wrong byte or message, a connection
#     or member the server closed, an echo or a close that stalls for
#     STALL s, a reload not applied or whose servers do not answer, more
#     than 1 in 1000 UDP datagrams lost, netlabd not back to idle;
#   - growth after warm-up (benches/soak_plot.py says the rule and its
#     tolerances): the steady-state samples in thirds, median of the last
#     third against median of the second;
#   - netlabd's log: any WARN or ERROR line. None is expected: the load
#     behaves (resets and abrupt closes are normal client behaviour, which
#     netlabd logs at debug level), so any warning is a finding;
#   - netlabd not stopping cleanly (exit 0) on SIGTERM at the end.
#
# Writes benches/results/soak-YYYYMMDD-HHMM.csv and benches/results/soak.svg,
# and appends the summary with the exact command to benches/results/soak.md.
#
# Settings (environment): ECHO_CONNS (7800), THREAD_CONNS (100),
# FORK_CONNS (100), CHAT_MEMBERS (2000), UDP_FLOWS (64), RELOAD_EVERY (30),
# SAMPLE_EVERY (10), STALL (30), SOAK_ARGS (more netlab-soak options),
# CARGO_TARGET_DIR (where the release build goes, default ./target).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
NAME=soak

usage() {
    echo "usage: benches/soak.sh MINUTES   (e.g. benches/soak.sh 30)" >&2
    exit 2
}
[ $# -eq 1 ] || usage
MINUTES=$1
if ! awk -v m="$MINUTES" 'BEGIN { exit !(m ~ /^[0-9]+(\.[0-9]+)?$/ && m > 0) }'; then
    echo "soak: MINUTES must be a positive number, not \"$MINUTES\"" >&2
    usage
fi

ECHO_CONNS=${ECHO_CONNS:-7800}
THREAD_CONNS=${THREAD_CONNS:-100}
FORK_CONNS=${FORK_CONNS:-100}
CHAT_MEMBERS=${CHAT_MEMBERS:-2000}
UDP_FLOWS=${UDP_FLOWS:-64}
RELOAD_EVERY=${RELOAD_EVERY:-30}
SAMPLE_EVERY=${SAMPLE_EVERY:-10}
STALL=${STALL:-30}
SOAK_ARGS=${SOAK_ARGS:-}
HELD=$((ECHO_CONNS + THREAD_CONNS + FORK_CONNS + CHAT_MEMBERS))

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
RESULTS=$ROOT/benches/results

# Each side holds one descriptor a connection, plus listeners, UDP flows,
# chat members in the middle of joining and leaving, the fork children's
# first moments: a quarter more covers it.
NEED_FDS=$((HELD + HELD / 4 + 256))
HARD=$(ulimit -Hn)
if [ "$HARD" != unlimited ] && [ "$HARD" -lt "$NEED_FDS" ]; then
    echo "soak: the hard limit on open files is $HARD; $HELD connections need $NEED_FDS on each side." >&2
    echo "soak: raise it (as root: ulimit -Hn $NEED_FDS, or LimitNOFILE in a unit) and run again." >&2
    exit 1
fi
if [ "$HARD" = unlimited ]; then
    ulimit -n $((NEED_FDS * 2))
else
    ulimit -n "$HARD"
fi

SERVER_CPU=0
CLIENT_CPU=1
PIN_SERVER=()
PIN_CLIENT=()
if command -v taskset >/dev/null 2>&1; then
    if [ "$(nproc --all)" -ge 2 ]; then
        PIN_SERVER=(taskset -c "$SERVER_CPU")
        PIN_CLIENT=(taskset -c "$CLIENT_CPU")
    else
        echo "soak: fewer than 2 CPUs: netlabd and the generator share one" >&2
    fi
else
    echo "soak: no taskset: netlabd and the generator are not pinned" >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/netlab-soak.XXXXXX")
NETLABD_PID=""
GEN_PID=""
TAIL_PID=""
cleanup() {
    # Only the processes this script started, by their ids.
    if [ -n "$TAIL_PID" ]; then
        kill -TERM "$TAIL_PID" 2>/dev/null || true
        wait "$TAIL_PID" 2>/dev/null || true
TAIL_PID=""
    fi
    if [ -n "$GEN_PID" ]; then
        kill -TERM "$GEN_PID" 2>/dev/null || true
        wait "$GEN_PID" 2>/dev/null || true
        GEN_PID=""
    fi
    if [ -n "$NETLABD_PID" ]; then
        kill -TERM "$NETLABD_PID" 2>/dev/null || true
        # netlabd gives connections shutdown_grace (5 s) to finish.
        for _ in $(seq 100); do
            kill -0 "$NETLABD_PID" 2>/dev/null || break
            sleep 0.1
        done
        # Its fork children die with it (PR_SET_PDEATHSIG).
        kill -KILL "$NETLABD_PID" 2>/dev/null || true
        wait "$NETLABD_PID" 2>/dev/null || true
        NETLABD_PID=""
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "soak: interrupted" >&2; exit 130' INT TERM HUP

echo "soak: building release binaries" >&2
cargo build --release --quiet -p netlab-daemon --bin netlabd -p netlab-benches --bin netlab-soak

# Ports free now, all distinct (held together while chosen), free for
# both TCP and UDP; IPv6 loopback if the machine has it.
read -r -a PORTS < <(python3 - <<'PY'
import socket
held, ports = [], []
while len(ports) < 10:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        t.close(); continue
    held += [t, u]; ports.append(port)
print(*ports)
PY
)
HAVE_V6=$(python3 -c 'import socket, sys
try:
    s = socket.socket(socket.AF_INET6); s.bind(("::1", '"${PORTS[0]}"')); print(1)
except OSError:
    print(0)')
P_ECHO=${PORTS[0]} P_THREAD=${PORTS[1]} P_FORK=${PORTS[2]} P_LINE=${PORTS[3]} P_HEADER=${PORTS[4]}
P_BINCODE=${PORTS[5]} P_UDP=${PORTS[6]} P_FLIP=${PORTS[7]} P_PROBE=${PORTS[8]} P_METRICS=${PORTS[9]}
ECHO_LISTEN="\"127.0.0.1:$P_ECHO\""
ECHO_ARGS=(--echo "127.0.0.1:$P_ECHO")
if [ "$HAVE_V6" = 1 ]; then
    ECHO_LISTEN="$ECHO_LISTEN, \"[::1]:$P_ECHO\""
    ECHO_ARGS+=(--echo "[::1]:$P_ECHO")
fi

# The servers under load: the same in both variants.
base_config() {
    cat <<CONF
[daemon]
log = "stderr"
shutdown_grace = "5s"
metrics = "127.0.0.1:$P_METRICS"

[[server]]
name = "echo-event"
service = "echo"
model = "event"
workers = 2
listen = [$ECHO_LISTEN]
max_connections = $((ECHO_CONNS + ECHO_CONNS / 4 + 100))
idle_timeout = "120s"

[[server]]
name = "echo-thread"
service = "echo"
model = "thread"
listen = ["127.0.0.1:$P_THREAD"]
max_connections = $((THREAD_CONNS + THREAD_CONNS / 2 + 10))
idle_timeout = "120s"

[[server]]
name = "echo-fork"
service = "echo"
model = "fork"
listen = ["127.0.0.1:$P_FORK"]
max_connections = $((FORK_CONNS + FORK_CONNS / 2 + 10))
idle_timeout = "120s"

[[server]]
name = "chat"
service = "chat"
listen = [ { addr = "127.0.0.1:$P_LINE", dialect = "line" },
           { addr = "127.0.0.1:$P_HEADER", dialect = "header", header_len = 10 },
           { addr = "127.0.0.1:$P_BINCODE", dialect = "bincode" } ]
max_clients = $((CHAT_MEMBERS + CHAT_MEMBERS / 4 + 100))

[[server]]
name = "echo-udp"
service = "echo"
transport = "udp"
workers = 2
listen = ["127.0.0.1:$P_UDP"]
CONF
}
# Variant A (netlabd starts on it): flip with one idle timeout, and probe.
{
    base_config
    cat <<CONF

[[server]]
name = "flip"
service = "echo"
listen = ["127.0.0.1:$P_FLIP"]
idle_timeout = "30s"

[[server]]
name = "probe"
service = "count"
listen = ["127.0.0.1:$P_PROBE"]
CONF
} >"$WORK/variant-a.toml"
# Variant B: flip changed (so restarted), probe removed.
{
    base_config
    cat <<CONF

[[server]]
name = "flip"
service = "echo"
listen = ["127.0.0.1:$P_FLIP"]
idle_timeout = "31s"
CONF
} >"$WORK/variant-b.toml"
cp "$WORK/variant-a.toml" "$WORK/netlabd.toml"
"$BIN/netlabd" --check --config "$WORK/netlabd.toml" >&2
"$BIN/netlabd" --check --config "$WORK/variant-b.toml" >&2

LOG=$WORK/netlabd.log
: >"$LOG"
echo "soak: netlabd on CPU $SERVER_CPU, fd limit $(ulimit -n); config $WORK/netlabd.toml" >&2
"${PIN_SERVER[@]}" "$BIN/netlabd" --config "$WORK/netlabd.toml" 2>"$LOG" &
NETLABD_PID=$!
# Every server is bound before any starts, and they start in the file's
# order: once the last one says it listens, all do.
for _ in $(seq 100); do
    grep -q '^[^ ]* INFO  server probe .* listening on ' "$LOG" && break
    if ! kill -0 "$NETLABD_PID" 2>/dev/null; then
        echo "soak: netlabd exited before listening:" >&2
        cat "$LOG" >&2
        exit 1
    fi
    sleep 0.1
done
if ! grep -q '^[^ ]* INFO  server probe .* listening on ' "$LOG"; then
    echo "soak: netlabd is not listening after 10 s:" >&2
    cat "$LOG" >&2
    exit 1
fi

STAMP=$(date -u '+%Y%m%d-%H%M')
CSV=$WORK/soak.csv
DURATION=$(awk -v m="$MINUTES" 'BEGIN { printf "%.0f", m * 60 }')
GEN_ARGS=(--pid "$NETLABD_PID" --log "$LOG" --config "$WORK/netlabd.toml"
    --variant "$WORK/variant-a.toml" --variant "$WORK/variant-b.toml"
    --reload-every "$RELOAD_EVERY" --sample-every "$SAMPLE_EVERY" --duration "$DURATION" --stall "$STALL"
    --csv "$CSV" --summary "$WORK/summary.md"
    "${ECHO_ARGS[@]}" --echo-conns "$ECHO_CONNS"
    --thread-echo "127.0.0.1:$P_THREAD" --thread-conns "$THREAD_CONNS"
    --fork-echo "127.0.0.1:$P_FORK" --fork-conns "$FORK_CONNS"
    --udp "127.0.0.1:$P_UDP" --udp-flows "$UDP_FLOWS"
    --chat-line "127.0.0.1:$P_LINE" --chat-header "127.0.0.1:$P_HEADER" --chat-bincode "127.0.0.1:$P_BINCODE"
    --header-len 10 --chat-members "$CHAT_MEMBERS"
    --flip "127.0.0.1:$P_FLIP" --probe "127.0.0.1:$P_PROBE" --probe-in 0)
# shellcheck disable=SC2206 # SOAK_ARGS is meant to split into options
GEN_ARGS+=($SOAK_ARGS)
echo "soak: $HELD connections for $MINUTES min, generator on CPU $CLIENT_CPU" >&2
GEN_STATUS=0
# Made first, so that tail finds it however the two start.
: >"$WORK/generator.log"
"${PIN_CLIENT[@]}" "$BIN/netlab-soak" "${GEN_ARGS[@]}" 2>"$WORK/generator.log" &
GEN_PID=$!
# The generator's progress, as it goes (it is also kept for the summary).
tail -n +1 -f "$WORK/generator.log" --pid "$GEN_PID" >&2 &
TAIL_PID=$!
wait "$GEN_PID" || GEN_STATUS=$?
GEN_PID=""
wait "$TAIL_PID" 2>/dev/null || true
TAIL_PID=""

# What an operator's Prometheus would have seen: the bytes each server
# moved, by its own counters (the fork model's through its children's
# shared memory).
METRICS_STATUS=0
python3 - "127.0.0.1:$P_METRICS" >"$WORK/metrics.md" <<'PY' || METRICS_STATUS=$?
import re, sys, urllib.request
body = urllib.request.urlopen("http://%s/metrics" % sys.argv[1], timeout=10).read().decode()
totals = {}
for line in body.splitlines():
    m = re.match(r'netlab_(received|sent)_bytes_total\{server="([^"]+)",[^}]*\} (\S+)$', line)
    if m:
        key = (m.group(2), m.group(1))
        totals[key] = totals.get(key, 0) + float(m.group(3))
print("| server | received (MB) | sent (MB) |")
print("| --- | ---: | ---: |")
for server in sorted({s for s, _ in totals}):
    print("| %s | %.1f | %.1f |" % (server, totals.get((server, "received"), 0) / 1e6,
                                   totals.get((server, "sent"), 0) / 1e6))
missing = [s for s in ("echo-event", "echo-thread", "echo-fork") if not totals.get((s, "sent"))]
if missing:
    print("\nno bytes counted for: %s" % ", ".join(missing))
    sys.exit(1)
PY

# netlabd must stop cleanly (if it is still there).
kill -TERM "$NETLABD_PID" 2>/dev/null || true
NETLABD_STATUS=0
wait "$NETLABD_PID" || NETLABD_STATUS=$?
NETLABD_PID=""

VERDICTS=()
[ "$GEN_STATUS" -eq 0 ] || VERDICTS+=("the generator's checks failed (exit $GEN_STATUS): see its failures above")
[ "$NETLABD_STATUS" -eq 0 ] || VERDICTS+=("netlabd's exit status was $NETLABD_STATUS, not 0 (a clean stop on SIGTERM)")
[ "$METRICS_STATUS" -eq 0 ] || VERDICTS+=("/metrics did not show every echo server's bytes (exit $METRICS_STATUS)")
# Unexpected log lines: every WARN and ERROR (see the top of this file).
grep -E '^[^ ]+ (WARN|ERROR) ' "$LOG" >"$WORK/unexpected.log" || true
UNEXPECTED=$(wc -l <"$WORK/unexpected.log")
[ "$UNEXPECTED" -eq 0 ] || VERDICTS+=("netlabd logged $UNEXPECTED warning/error line(s)")

mkdir -p "$RESULTS"
cp "$CSV" "$RESULTS/soak-$STAMP.csv"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
JUDGE_STATUS=0
python3 "$ROOT/benches/soak_plot.py" "$CSV" --out "$RESULTS/soak.svg" \
    --title "netlabd soak, $MINUTES min, $HELD connections, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT" \
    >"$WORK/judge.md" || JUDGE_STATUS=$?
case $JUDGE_STATUS in
    0) ;;
    1) VERDICTS+=("netlabd grew after warm-up (table above)") ;;
    *) VERDICTS+=("the samples could not be judged (soak_plot.py exit $JUDGE_STATUS)") ;;
esac

REPORT=$WORK/report.md
{
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC'), $MINUTES min, on $(uname -srm), $(nproc --all) CPUs, commit $COMMIT"
    echo
    echo "Command: \`benches/soak.sh $MINUTES\` (netlabd pinned to CPU $SERVER_CPU, generator to CPU $CLIENT_CPU; IPv6 echo listener: $([ "$HAVE_V6" = 1 ] && echo yes || echo no));"
    echo "samples in \`benches/results/soak-$STAMP.csv\`, plot \`benches/results/soak.svg\`."
    echo
    cat "$WORK/summary.md" 2>/dev/null || echo "(the generator wrote no summary)"
    echo
    cat "$WORK/judge.md"
    echo
    echo "netlabd's own counters at the end (\`/metrics\`, bytes since start, reloads included):"
    echo
    cat "$WORK/metrics.md" 2>/dev/null || echo "(no scrape)"
    echo
    if [ "$UNEXPECTED" -eq 0 ]; then
        echo "netlabd's log: no WARN or ERROR line in $(wc -l <"$LOG") lines; stopped with status $NETLABD_STATUS."
    else
        echo "netlabd's log: $UNEXPECTED WARN/ERROR line(s), the first ones:"
        echo
        echo '```'
        head -n 20 "$WORK/unexpected.log"
        echo '```'
    fi
    echo
    if [ ${#VERDICTS[@]} -eq 0 ]; then
        echo "**Verdict: PASS.**"
    else
        echo "**Verdict: FAIL**: $(IFS=';'; echo "${VERDICTS[*]}" | sed 's/;/; /g')."
    fi
    echo
    echo "Exact commands:"
    echo
    echo '```'
    echo "ulimit -n $(ulimit -n)"
    echo "${PIN_SERVER[*]} netlabd --config netlabd.toml   # variant A, below"
    echo "${PIN_CLIENT[*]} netlab-soak ${GEN_ARGS[*]}" | sed "s#$WORK/##g"
    echo "kill -HUP <netlabd> every $RELOAD_EVERY s, alternating variant-b.toml / variant-a.toml (done by netlab-soak)"
    echo '```'
    echo
    echo "<details><summary>variant-a.toml (variant-b.toml: flip's idle_timeout is 31s, no probe)</summary>"
    echo
    echo '```toml'
    cat "$WORK/variant-a.toml"
    echo '```'
    echo
    echo "</details>"
    echo
} >"$REPORT"

cat "$REPORT"
[ -s "$RESULTS/soak.md" ] || printf '# Soak: netlabd under 10,000 connections, churn and reloads\n\nAppended by benches/soak.sh, newest last.\n\n' >"$RESULTS/soak.md"
cat "$REPORT" >>"$RESULTS/soak.md"
echo "soak: appended to benches/results/soak.md; samples in benches/results/soak-$STAMP.csv; plot in benches/results/soak.svg" >&2

if [ ${#VERDICTS[@]} -ne 0 ]; then
    for v in "${VERDICTS[@]}"; do echo "soak: FAIL: $v" >&2; done
    exit 1
fi
echo "soak: PASS" >&2
