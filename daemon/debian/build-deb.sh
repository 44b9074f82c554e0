#!/usr/bin/env bash
# Builds the Debian package, target/debian/netlab_VERSION-1_ARCH.deb:
# netlabd and netlab, libnetlab (shared with its SONAME, static, netlab.pc,
# netlab.h), the man pages, the shell completions, netlabd.service and
# netlabd.socket, and /etc/netlab/netlabd.toml (a conffile).
# Needs cargo-c and cargo-deb:
#   cargo install --locked cargo-c cargo-deb
# Extra arguments go to cargo deb (e.g. --output DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."

target=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
# cargo deb reads "target/release/deb-stage" in the assets as this, the
# dist profile's directory.
stage="$target/dist/deb-stage"
rm -rf "$stage"
cargo cinstall --profile dist -p netlab --prefix /usr --libdir "/usr/lib/$multiarch" \
    --destdir "$stage"
# The two programs only (cargo deb alone would build the whole workspace).
cargo build --profile dist -p netlab-daemon --bins
cargo deb -p netlab-daemon --profile dist --no-build "$@"
