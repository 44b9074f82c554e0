# What benches/run-*.sh share; sourced after they set NAME (run-echo, ...).
# The server runs pinned to CPU 0 and the generator to CPU 1, so that they
# never compete for a core; SERVER_PID is the server running now.

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release

SERVER_CPU=0
CLIENT_CPU=1
if [ "$(nproc --all)" -lt 2 ]; then
    echo "$NAME: fewer than 2 CPUs: server and generator share CPU 0" >&2
    CLIENT_CPU=0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/netlab-$NAME.XXXXXX")
SERVER_PID=""

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port that is free now: bound to port 0, read, released.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# User + system CPU ticks of a process so far.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# Runs COMMAND... in the background and writes the server's CPU seconds
# over the measured window (after WARMUP, for DURATION) to CPU_FILE; returns
# the command's exit status. When the generator, not the server, sets the
# pace, equal rates can hide servers that differ in what each unit of work
# costs them; this is what shows it.
with_server_cpu() {
    local cpu_file=$1 pid before after status=0
    shift
    "$@" &
    pid=$!
    sleep "$WARMUP"
    before=$(cpu_ticks "$SERVER_PID")
    sleep "$DURATION"
    after=$(cpu_ticks "$SERVER_PID")
    wait "$pid" || status=$?
    awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f\n", t / hz }' >"$cpu_file"
    return "$status"
}

# Reads one numeric field from a bench JSON line.
field() {
    sed -n "s/.*\"$2\":\([-0-9.e+]*\).*/\1/p" "$1"
}

# Copies KEY's best round, WORK/KEY.N.json with the highest FIELD, to
# WORK/KEY.json (and its .cpu); prints every round's FIELD.
best_of() {
    local key=$1 by=$2 file best="" best_rate=-1 rate rates=()
    for file in "$WORK/$key".*.json; do
        [ -s "$file" ] || continue
        rate=$(field "$file" "$by")
        rates+=("$(printf '%.0f' "$rate")")
        if awk -v a="$rate" -v b="$best_rate" 'BEGIN { exit !(a > b) }'; then
            best=$file
            best_rate=$rate
        fi
    done
    if [ -n "$best" ]; then
        cp "$best" "$WORK/$key.json"
        cp "$best.cpu" "$WORK/$key.json.cpu"
    fi
    echo "${rates[*]}"
}

# Draws the latest run of each results file (benches/plot.py).
plot_latest() {
    if command -v python3 >/dev/null; then
        python3 "$ROOT/benches/plot.py" >&2 || echo "$NAME: the plot failed (the table above stands)" >&2
    else
        echo "$NAME: no python3, so no plot (benches/plot.py)" >&2
    fi
}

# Prints the commands as a fenced block, under "Commands:".
print_commands() {
    echo "Commands:"
    echo
    echo '```'
    printf '%s\n' "${COMMANDS[@]}"
    echo '```'
    echo
}

# Shows REPORT and appends it to RESULTS, which starts with TITLE when new.
publish_report() {
    local title=$1
    cat "$REPORT"
    mkdir -p "$(dirname "$RESULTS")"
    [ -s "$RESULTS" ] || printf '# %s\n\nAppended by benches/%s.sh, newest last.\n\n' "$title" "$NAME" >"$RESULTS"
    cat "$REPORT" >>"$RESULTS"
    echo "$NAME: appended to ${RESULTS#"$ROOT"/}" >&2
}
