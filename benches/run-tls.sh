#!/usr/bin/env bash
# TLS echo: netlabd terminating TLS itself, against stunnel4 terminating TLS
# in front of netlabd's plain echo (the way TLS is added to a plain service
# without netlab's own), under the same load from `netlab bench echo --tls`.
#
# Two measurements per server, each in interleaved rounds:
#   requests:   CONNECTIONS persistent TLS connections, SIZE-byte requests,
#               closed loop: requests/s, and the server side's CPU time per
#               request (netlabd alone; stunnel plus the netlabd behind it);
#   handshakes: HS_CONNECTIONS connections, each request on a new connection
#               with a full handshake (no resumption): handshakes/s, and
#               handshakes per second of server-side CPU.
# One generator core cannot saturate either server, so the comparison is per
# CPU-second; the raw rates are reported beside. The server side is pinned to
# CPU 0 (both stunnel and netlabd, for the stunnel setup), the generator to
# CPU 1. For each server and measurement, the round with the least CPU per
# unit is reported (all rounds are listed): on a shared machine, disturbance
# only ever costs more.
#
# Certificates (ECDSA P-256) are made with openssl for the run; both servers
# use the same. stunnel4 is installed with apt-get when missing.
#
# Settings (environment): CONNECTIONS (100), HS_CONNECTIONS (16), SIZE (64),
# DURATION (10, seconds), WARMUP (1), ROUNDS (3), CARGO_TARGET_DIR.
# Appends the table and the exact commands to benches/results/tls.md.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

CONNECTIONS=${CONNECTIONS:-100}
HS_CONNECTIONS=${HS_CONNECTIONS:-16}
SIZE=${SIZE:-64}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
RESULTS=$ROOT/benches/results/tls.md
NAME=run-tls
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"

STUNNEL_PID=""
stop_all() {
    stop_server
    if [ -n "$STUNNEL_PID" ]; then
        kill -TERM "$STUNNEL_PID" 2>/dev/null || true
        wait "$STUNNEL_PID" 2>/dev/null || true
        STUNNEL_PID=""
    fi
}
trap 'stop_all; rm -rf "$WORK"' EXIT

if ! command -v stunnel4 >/dev/null 2>&1 && ! command -v stunnel >/dev/null 2>&1; then
    echo "run-tls: stunnel4 is missing; installing it (apt-get install stunnel4)" >&2
    { apt-get -o DPkg::Lock::Timeout=600 update && apt-get -o DPkg::Lock::Timeout=600 install -y stunnel4; } >"$WORK/apt.log" 2>&1 || {
        tail -n 5 "$WORK/apt.log" >&2
        echo "run-tls: cannot install stunnel4" >&2
        exit 1
    }
fi
STUNNEL=$(command -v stunnel4 || command -v stunnel)

echo "run-tls: building release binaries" >&2
cargo build --release --workspace --quiet

echo "run-tls: making certificates" >&2
(
    cd "$WORK"
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -subj "/CN=bench CA" -days 2 2>/dev/null
    openssl req "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
        -days 2 -extfile server.ext 2>/dev/null
)

# CPU ticks of every process in PIDS, summed.
ticks_of() {
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(cpu_ticks "$pid")))
    done
    echo "$total"
}

# Runs the generator with ARGS against ADDR while measuring the CPU of
# PIDS over the window; FILE gets the JSON, FILE.cpu the CPU seconds.
measure() {
    local addr=$1 file=$2 status=0 pid before after
    shift 2
    local -a pids=("${PIDS[@]}")
    taskset -c "$CLIENT_CPU" "$BIN/netlab" bench echo "$addr" --tls --ca "$WORK/ca.pem" \
        --size "$SIZE" --duration "$DURATION" --warmup "$WARMUP" --json "$@" >"$file" &
    pid=$!
    sleep "$WARMUP"
    before=$(ticks_of "${pids[@]}")
    sleep "$DURATION"
    after=$(ticks_of "${pids[@]}")
    wait "$pid" || status=$?
    awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f\n", t / hz }' >"$file.cpu"
    if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
        echo "run-tls: the bench against $addr failed (exit $status)" >&2
        return 1
    fi
}

wait_for_tls() {
    local addr=$1
    for _ in $(seq 100); do
        if "$BIN/netlab" echo --tls --ca "$WORK/ca.pem" --timeout 200ms "$addr" ready >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "run-tls: $addr did not answer over TLS within 10 s" >&2
    return 1
}

COMMANDS=()

# netlabd, TLS on its own listener, one reactor.
run_netlabd() {
    local addr="127.0.0.1:$(free_port)"
    cat >"$WORK/netlabd-tls.toml" <<EOF
[[server]]
name = "echo-tls"
service = "echo"
workers = 1
listen = [{ addr = "$addr", tls = { cert = "$WORK/server.pem", key = "$WORK/server.key" } }]
EOF
    taskset -c "$SERVER_CPU" "$BIN/netlabd" --config "$WORK/netlabd-tls.toml" 2>"$WORK/netlabd-tls.log" &
    SERVER_PID=$!
    PIDS=("$SERVER_PID")
    wait_for_tls "$addr" || { cat "$WORK/netlabd-tls.log" >&2; return 1; }
    measure "$addr" "$WORK/netlabd.req.$ROUND.json" --connections "$CONNECTIONS"
    measure "$addr" "$WORK/netlabd.hs.$ROUND.json" --connections "$HS_CONNECTIONS" --handshakes
    stop_all
    [ "$ROUND" -eq 1 ] || return 0
    COMMANDS+=("taskset -c $SERVER_CPU netlabd --config netlabd-tls.toml  # echo, workers = 1, listen = [{ addr, tls = { cert, key } }]")
}

# stunnel4 terminating TLS, in front of netlabd's plain echo (one reactor).
run_stunnel() {
    local plain="127.0.0.1:$(free_port)" addr="127.0.0.1:$(free_port)"
    cat >"$WORK/netlabd-plain.toml" <<EOF
[[server]]
name = "echo"
service = "echo"
workers = 1
listen = ["$plain"]
EOF
    cat >"$WORK/stunnel.conf" <<EOF
foreground = yes
pid =
[echo]
accept = $addr
connect = $plain
cert = $WORK/server.pem
key = $WORK/server.key
EOF
    taskset -c "$SERVER_CPU" "$BIN/netlabd" --config "$WORK/netlabd-plain.toml" 2>"$WORK/netlabd-plain.log" &
    SERVER_PID=$!
    taskset -c "$SERVER_CPU" "$STUNNEL" "$WORK/stunnel.conf" 2>"$WORK/stunnel.log" &
    STUNNEL_PID=$!
    PIDS=("$SERVER_PID" "$STUNNEL_PID")
    wait_for_tls "$addr" || { cat "$WORK/stunnel.log" >&2; return 1; }
    measure "$addr" "$WORK/stunnel.req.$ROUND.json" --connections "$CONNECTIONS"
    measure "$addr" "$WORK/stunnel.hs.$ROUND.json" --connections "$HS_CONNECTIONS" --handshakes
    stop_all
    [ "$ROUND" -eq 1 ] || return 0
    COMMANDS+=("taskset -c $SERVER_CPU netlabd --config netlabd-plain.toml  # echo, workers = 1, listen = [\"$plain\"]")
    COMMANDS+=("taskset -c $SERVER_CPU $(basename "$STUNNEL") stunnel.conf  # accept = $addr, connect = $plain, cert, key")
}

for ROUND in $(seq "$ROUNDS"); do
    echo "run-tls: round $ROUND of $ROUNDS" >&2
    run_netlabd
    run_stunnel
done
COMMANDS+=("taskset -c $CLIENT_CPU netlab bench echo ADDR --tls --ca ca.pem --size $SIZE --duration $DURATION --warmup $WARMUP --json --connections $CONNECTIONS")
COMMANDS+=("taskset -c $CLIENT_CPU netlab bench echo ADDR --tls --ca ca.pem --size $SIZE --duration $DURATION --warmup $WARMUP --json --connections $HS_CONNECTIONS --handshakes")

# CPU microseconds per unit (request or handshake) in FILE.
us_per_unit() {
    awk -v cpu="$(cat "$1.cpu")" -v r="$(field "$1" requests_per_s)" -v d="$DURATION" \
        'BEGIN { if (r > 0) printf "%.2f", cpu * 1e6 / (r * d); else print "inf" }'
}

# KEY's round with the least CPU per unit, copied to WORK/KEY.json; prints
# every round's rate.
best_round() {
    local key=$1 file best="" best_us="" us rates=()
    for file in "$WORK/$key".*.json; do
        [ -s "$file" ] || continue
        rates+=("$(printf '%.0f' "$(field "$file" requests_per_s)")")
        us=$(us_per_unit "$file")
        if [ -z "$best_us" ] || awk -v a="$us" -v b="$best_us" 'BEGIN { exit !(a < b) }'; then
            best=$file
            best_us=$us
        fi
    done
    [ -n "$best" ] && cp "$best" "$WORK/$key.json" && cp "$best.cpu" "$WORK/$key.json.cpu"
    echo "${rates[*]}"
}

row() {
    local label=$1 key=$2 rounds file
    rounds=$(best_round "$key")
    file=$WORK/$key.json
    printf '| %s | %s | %s | %s | %s | %s | %s |' "$label" \
        "$(field "$file" requests_per_s)" "$(field "$file" p50_us)" "$(field "$file" p99_us)" \
        "$(field "$file" errors)" "$(us_per_unit "$file")" "${rounds// /, }"
}

REPORT=$WORK/report.md
{
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -srm), $(nproc --all) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "TLS echo, $SIZE-byte requests, ${DURATION} s measured after ${WARMUP} s warmup; server side pinned to CPU $SERVER_CPU,"
    echo "generator to CPU $CLIENT_CPU; ECDSA P-256 certificate, rustls client. Each row: the round with the least server CPU per unit, of $ROUNDS."
    echo
    echo "| server | per s | p50 µs | p99 µs | errors | server CPU µs per unit | rounds (per s) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
    row "netlabd, requests ($CONNECTIONS conns)" netlabd.req
    echo
    row "stunnel4 + netlabd, requests ($CONNECTIONS conns)" stunnel.req
    echo
    row "netlabd, full handshakes ($HS_CONNECTIONS conns)" netlabd.hs
    echo
    row "stunnel4 + netlabd, full handshakes ($HS_CONNECTIONS conns)" stunnel.hs
    echo
    echo
    awk -v n="$(us_per_unit "$WORK/netlabd.req.json")" -v s="$(us_per_unit "$WORK/stunnel.req.json")" \
        'BEGIN { printf "CPU per request, netlabd / (stunnel4 + netlabd): %.2f (target: at most 0.7)\n", n / s }'
    awk -v n="$(us_per_unit "$WORK/netlabd.hs.json")" -v s="$(us_per_unit "$WORK/stunnel.hs.json")" \
        'BEGIN { printf "Full handshakes per CPU-second, netlabd / stunnel4: %.2f (target: at least 1.2)\n", s / n }'
    echo
    echo "Commands (files in the run's temporary directory):"
    echo
    echo '```'
    printf '%s\n' "${COMMANDS[@]}"
    echo '```'
    echo
} >"$REPORT"

cat "$REPORT"
mkdir -p "$(dirname "$RESULTS")"
[ -s "$RESULTS" ] || printf '# TLS echo: netlabd vs stunnel4 in front of netlabd\n\nAppended by benches/run-tls.sh, newest last.\n\n' >"$RESULTS"
cat "$REPORT" >>"$RESULTS"
echo "run-tls: appended to ${RESULTS#"$ROOT"/}" >&2
