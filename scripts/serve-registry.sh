#!/usr/bin/env bash
# Install hoist and start its registry on 127.0.0.1:5000: filesystem store, no auth.
# Usage: bash scripts/serve-registry.sh [DATA_DIR]   (default /var/lib/hoist/registry)
source "$(dirname "$0")/common.sh"
DATA="${1:-${HOIST_REGISTRY_ROOT:-/var/lib/hoist/registry}}"
ensure_venv ""
mkdir -p "$DATA"
cat <<MSG
==> hoist registry on http://127.0.0.1:5000 (store: $DATA)
    push to it:   docker push 127.0.0.1:5000/team/app:1.0
                  skopeo copy --dest-tls-verify=false oci:DIR:app docker://127.0.0.1:5000/team/app:1.0
                  $VENV/bin/hoist push 127.0.0.1:5000/team/app:1.0
    stop it with Ctrl-C
MSG
exec "$VENV/bin/hoist" registry serve --addr 127.0.0.1:5000 --root "$DATA"
