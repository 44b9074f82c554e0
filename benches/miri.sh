#!/usr/bin/env bash
# Miri over netlab's pure parts: the library's unit tests of the codecs,
# the services (echo, count, the chat hub), the FFI glue that needs no
# socket (the decoder and encoder handles, last-error buffers), the chat
# client's decoder and the configuration parser. Miri runs them in its
# interpreter and stops at undefined behaviour: an out-of-bounds or
# dangling pointer, a data race, a leak, an invalid value.
#
#   benches/miri.sh            the tests below, under Miri
#   benches/miri.sh FILTER...  only the tests whose path holds a FILTER
#
# Tests in these modules that open sockets are marked
# #[cfg_attr(miri, ignore = ...)]: Miri runs no network I/O. Needs the
# nightly toolchain; adds its miri and rust-src components if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly miri --version >/dev/null 2>&1; then
    rustup +nightly component add miri rust-src
fi
# libtest filters: a test runs when its path holds one of them.
FILTERS=("$@")
if [ ${#FILTERS[@]} -eq 0 ]; then
    FILTERS=(codec:: service:: ffi::error:: client::chat:: config::)
fi
exec cargo +nightly miri test -p netlab --lib -- "${FILTERS[@]}"
