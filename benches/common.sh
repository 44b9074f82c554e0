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
