#!/usr/bin/env bash
# Fuzzing, as a benchmark: runs every cargo-fuzz target of fuzz/, one after
# another (one core at a time), prints what each did and appends it, with
# the exact commands, to benches/results/fuzz.md.
#
#   benches/fuzz.sh MINUTES       each target for MINUTES minutes
#   benches/fuzz.sh --runs N      each target until N executions
#   benches/fuzz.sh --cmin        merge fuzz/work/ into the committed
#                                 corpora, minimized (then commit them)
#   TARGETS="line split" benches/fuzz.sh 1     only these targets
#
# Every run starts from the committed corpus fuzz/corpus/TARGET and writes
# what it finds to fuzz/work/TARGET (not committed). A target that finds a
# crash stops; its input is in fuzz/artifacts/TARGET/, the other targets
# still run, and the script exits 1. Needs the nightly toolchain; installs
# cargo-fuzz if it is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FUZZ=$ROOT/fuzz
RESULTS=$ROOT/benches/results/fuzz.md
# Debug assertions on: an overflow or a failed assert! in the library is a
# crash, as it would be in a debug build. No sanitizer by default: the code
# fuzzed (codec/, service/, config, the chat client's decoder) has no
# unsafe, and AddressSanitizer would watch only dependencies' at half the
# speed; SANITIZER=address turns it on.
FLAGS=(-a -s "${SANITIZER:-none}")

usage() {
    echo "usage: $0 MINUTES | --runs N | --cmin   (TARGETS=\"a b\" to pick targets)" >&2
    exit 2
}

[ $# -eq 1 ] || [ $# -eq 2 ] || usage
case $1 in
--runs)
    [[ ${2:-} =~ ^[0-9]+$ ]] || usage
    MODE=runs RUNS=$2
    LIMIT=(-runs="$RUNS")
    DESCRIBE="each target until $RUNS executions"
    ;;
--cmin)
    [ $# -eq 1 ] || usage
    MODE=cmin
    ;;
*)
    [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ] && [ $# -eq 1 ] || usage
    MODE=time MINUTES=$1
    LIMIT=(-max_total_time=$((MINUTES * 60)))
    DESCRIBE="each target for $MINUTES minute(s)"
    ;;
esac

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# One core: the build too.
export CARGO_BUILD_JOBS=1
cd "$FUZZ"
cargo +nightly fuzz build "${FLAGS[@]}"
TARGETS=${TARGETS:-$(cargo +nightly fuzz list)}

if [ "$MODE" = cmin ]; then
    for t in $TARGETS; do
        mkdir -p "corpus/$t"
        if [ -d "work/$t" ]; then
            cp -n "work/$t"/* "corpus/$t"/ 2>/dev/null || true
        fi
        cargo +nightly fuzz cmin "${FLAGS[@]}" "$t" "corpus/$t" >"work/$t.cmin.log" 2>&1
        echo "$t: $(find "corpus/$t" -type f | wc -l) inputs, $(du -sk "corpus/$t" | cut -f1) KiB"
    done
    echo "corpora: $(du -sk corpus | cut -f1) KiB in all"
    exit 0
fi

# A final-stats line of a libFuzzer log: `stat::NAME: VALUE`.
stat() {
    sed -n "s/^stat::$1: *\([0-9]*\).*/\1/p" "$2" | tail -1
}

rows=()
commands=("cd fuzz" "CARGO_BUILD_JOBS=1 cargo +nightly fuzz build ${FLAGS[*]}")
failed=0
for t in $TARGETS; do
    mkdir -p "work/$t" "corpus/$t"
    args=(-print_final_stats=1 -rss_limit_mb=2048 "${LIMIT[@]}")
    if [ -f "dict/$t.dict" ]; then
        args+=(-dict="dict/$t.dict")
    fi
    cmd=(cargo +nightly fuzz run "${FLAGS[@]}" "$t" "work/$t" "corpus/$t" -- "${args[@]}")
    commands+=("${cmd[*]}")
    log=work/$t.log
    start=$(date +%s.%N)
    if "${cmd[@]}" >"$log" 2>&1; then
        result=ok
    else
        artifact=$(grep -o 'artifacts/[^ ]*' "$log" | tail -1 || true)
        result="CRASH: fuzz/${artifact:-artifacts/$t/ (see fuzz/$log)}"
        failed=1
    fi
    end=$(date +%s.%N)
    execs=$(stat number_of_executed_units "$log")
    if [ -z "$execs" ]; then
        # No final stats (a crash): the last progress line's count.
        execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -1)
    fi
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
    rate=$(awk -v n="${execs:-0}" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
    corpus=$(find "work/$t" -type f | wc -l)
    row="| $t | ${execs:-?} | $secs | $rate | $corpus | $result |"
    rows+=("$row")
    echo "$row"
done

{
    if [ ! -f "$RESULTS" ]; then
        printf '# Fuzzing: every cargo-fuzz target of fuzz/\n\n'
        printf 'Appended by benches/fuzz.sh, newest last. Executions as libFuzzer counts them;\n'
        printf 'seconds are wall time of the run (start-up and the corpus replay included).\n\n'
    fi
    printf '## %s on %s %s %s, %s CPUs, commit %s\n\n' \
        "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(uname -s)" "$(uname -r)" "$(uname -m)" \
        "$(nproc --all)" "$(git -C "$ROOT" rev-parse --short HEAD)"
    printf '%s, one at a time (one core); %s; sanitizer: %s; debug assertions on.\n\n' \
        "$DESCRIBE" "$(cargo +nightly --version)" "${SANITIZER:-none}"
    printf '| target | executions | seconds | exec/s | inputs in work corpus | result |\n'
    printf '| --- | ---: | ---: | ---: | ---: | --- |\n'
    printf '%s\n' "${rows[@]}"
    printf '\nCommands:\n\n```\n'
    printf '%s\n' "${commands[@]}"
    printf '```\n\n'
} >>"$RESULTS"
echo "appended to ${RESULTS#"$ROOT"/}"
exit "$failed"
