#!/usr/bin/env bash
# Counts the instructions netlabd's chat room executes per message relayed,
# under valgrind's callgrind: a count that does not drift with the machine's
# speed or load, for comparing two builds (NETLABD_BASELINE, an older
# netlabd binary, beside this tree's) where timings on a busy machine would
# only compare luck. User space only: the kernel's TCP work, most of the real
# cost, is not counted, so this says whether a change costs more code, not
# how fast the server is (benches/run-chat.sh says that).
#
# Settings (environment): CLIENTS (100), BATCH (32), WINDOW (96), DURATION
# (4, seconds), NETLABD_BASELINE (optional). Prints, per build, the total
# instructions, the messages sent over the whole run, and their ratio.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CLIENTS=${CLIENTS:-100}
BATCH=${BATCH:-32}
WINDOW=${WINDOW:-96}
DURATION=${DURATION:-4}
NAME=callgrind-chat
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"

command -v valgrind >/dev/null || { echo "$NAME: valgrind is needed" >&2; exit 1; }
cargo build --release --workspace --quiet

count() {
    local label=$1 binary=$2 addr pid
    addr="127.0.0.1:$(free_port)"
    printf '[[server]]\nname = "chat"\nservice = "chat"\nlisten = [{ addr = "%s", dialect = "line" }]\n' "$addr" >"$WORK/chat.toml"
    valgrind --tool=callgrind --callgrind-out-file="$WORK/$label.out" "$binary" --config "$WORK/chat.toml" 2>"$WORK/$label.vg" &
    pid=$!
    SERVER_PID=$pid
    for _ in $(seq 100); do
        python3 -c 'import socket, sys; h, p = sys.argv[1].rsplit(":", 1); socket.create_connection((h, int(p)), 0.2).close()' "$addr" 2>/dev/null && break
        sleep 0.2
    done
    "$BIN/netlab" bench chat "$addr" --clients "$CLIENTS" --senders 1 --size 64 --window "$WINDOW" \
        --batch "$BATCH" --duration "$DURATION" --warmup 1 --json >"$WORK/$label.json"
    stop_server
    local ir sent
    ir=$(sed -n 's/^summary: //p' "$WORK/$label.out")
    # Messages sent over the whole run: the measured window's, scaled to the
    # warmup too (the room relays both).
    sent=$(awk -v s="$(field "$WORK/$label.json" sent)" -v d="$DURATION" 'BEGIN { printf "%.0f", s * (d + 1) / d }')
    awk -v l="$label" -v ir="$ir" -v n="$sent" \
        'BEGIN { printf "%-9s %12d instructions, %8d messages, %6.0f instructions per message\n", l, ir, n, ir / n }'
}

count new "$BIN/netlabd"
if [ -n "${NETLABD_BASELINE:-}" ]; then
    count baseline "$NETLABD_BASELINE"
fi
