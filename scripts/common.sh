# Shared set-up for the scripts: a virtualenv with hoist installed. Sourced, not run.
set -euo pipefail
HOIST_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HOIST_VENV:-$HOIST_SRC/.venv}"
export DEBIAN_FRONTEND=noninteractive

apt_install() {
    # apt_install PKG...: install what is missing (one apt-get update per run).
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "==> apt-get install ${missing[*]}"
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

ensure_venv() {
    # ensure_venv EXTRAS: a virtualenv at $VENV with hoist[EXTRAS] installed, editable.
    local extras="$1"
    if ! command -v python3 >/dev/null; then apt_install python3; fi
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$VENV"
        if ! python3 -m venv "$VENV" 2>/dev/null; then
            apt_install python3-venv
            rm -rf "$VENV"
            python3 -m venv "$VENV"
        fi
    fi
    local target="$HOIST_SRC"
    if [ -n "$extras" ]; then target="$HOIST_SRC[$extras]"; fi
    echo "==> pip install -e $target"
    # compat: the source folder on sys.path (a .pth line), not setuptools' import hook, which costs
    # every start of hoist ~15 ms here (a cached build is mostly start-up)
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$target" --config-settings editable_mode=compat
}
