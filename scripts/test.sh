#!/usr/bin/env bash
# Install everything the tests need (Debian peers, a virtualenv, pip deps) and run the whole suite.
# Usage: bash scripts/test.sh [PYTEST ARGS...]
source "$(dirname "$0")/common.sh"
apt_install ca-certificates skopeo umoci docker-registry docker.io runc buildah busybox-static \
    wrk iproute2 tar gzip libseccomp2 gcc libc6-dev debootstrap nftables iptables openssh-client git docker-compose
ensure_venv "test"
cd "$HOIST_SRC"
echo "==> ruff check"
"$VENV/bin/ruff" check storage registry builder runtime hoist tests bench
echo "==> mypy"
"$VENV/bin/mypy"
echo "==> pytest"
exec "$VENV/bin/python" -m pytest -q -rsfE --durations=15 "$@"
