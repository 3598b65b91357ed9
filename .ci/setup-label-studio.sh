#!/usr/bin/env bash
# Set up what the Label Studio adapter's tests need; idempotent (a second run is quick).
#
#   1. the project venv `.venv` with the `label-studio` extra (Flask 3, gunicorn, label-studio-sdk);
#   2. a SEPARATE venv for the Label Studio server itself (Django stack; it must not share the
#      project's venv), default `.venv-label-studio`, with label-studio==$LS_VERSION;
#   3. a pre-migrated Label Studio data dir (admin user + legacy API token) in
#      `$LS_VENV/data-template`, so that tests start a server on a copy in ~5 s instead of
#      running all migrations (~35-55 s) each time.
#
# Only package registries are used. Everything listens on 127.0.0.1 and is stopped by PID.
# Environment: PYTHON (default python3), OVSAM_LS_VENV (default .venv-label-studio),
# LS_VERSION (default 1.23.2), OVSAM_LS_SKIP_TEMPLATE=1 to skip step 3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LS_VERSION=${LS_VERSION:-1.23.2}
LS_VENV=${OVSAM_LS_VENV:-.venv-label-studio}
t0=$(date +%s)

# ---- 1. project venv + extra -------------------------------------------------------------------
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import flask, gunicorn, label_studio_sdk, ovsam_plugins" 2>/dev/null; then
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[label-studio]"
fi
echo "setup-label-studio: project venv ready ($(( $(date +%s) - t0 )) s)"

# ---- 2. Label Studio server venv ---------------------------------------------------------------
have_ls() {
    "$LS_VENV/bin/python" - "$LS_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("label-studio") == sys.argv[1] else 1)
EOF
}
if ! have_ls; then
    [ -x "$LS_VENV/bin/python" ] || "$PY" -m venv "$LS_VENV"
    # the venv ignores itself, so that it never shows up in `git status`
    echo '*' > "$LS_VENV/.gitignore"
    "$LS_VENV/bin/python" -m pip install -q --upgrade pip
    "$LS_VENV/bin/python" -m pip install -q "label-studio==$LS_VERSION"
fi
echo '*' > "$LS_VENV/.gitignore"
echo "setup-label-studio: label-studio $LS_VERSION in $LS_VENV ($(( $(date +%s) - t0 )) s)"

# ---- 3. pre-migrated data dir ------------------------------------------------------------------
[ "${OVSAM_LS_SKIP_TEMPLATE:-0}" = 1 ] && exit 0
TEMPLATE="$LS_VENV/data-template"
STAMP="$TEMPLATE/.ovsam-ready-$LS_VERSION"
if [ ! -f "$STAMP" ]; then
    rm -rf "$TEMPLATE" "$TEMPLATE.tmp"
    mkdir -p "$TEMPLATE.tmp/data" "$TEMPLATE.tmp/files" "$TEMPLATE.tmp/home"
    # a free port on 127.0.0.1
    PORT=$("$LS_VENV/bin/python" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    # credentials of the test admin (local server only); the tests read them from the same file
    cat > "$TEMPLATE.tmp/credentials.json" <<'EOF'
{"username": "admin@example.com", "password": "ovsam-test-password", "token": "0123456789abcdef0123456789abcdef01234567"}
EOF
    LOG="$TEMPLATE.tmp/first-start.log"
    HOME="$PWD/$TEMPLATE.tmp/home" \
    LABEL_STUDIO_BASE_DATA_DIR="$PWD/$TEMPLATE.tmp/data" \
    LOCAL_FILES_SERVING_ENABLED=true LOCAL_FILES_DOCUMENT_ROOT="$PWD/$TEMPLATE.tmp/files" \
    USE_DEFAULT_BANNED_SUBNETS=false LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false \
    "$LS_VENV/bin/label-studio" start --no-browser --internal-host 127.0.0.1 --port "$PORT" \
        --username admin@example.com --password ovsam-test-password \
        --user-token 0123456789abcdef0123456789abcdef01234567 --enable-legacy-api-token \
        >"$LOG" 2>&1 &
    LS_PID=$!
    ok=0
    for _ in $(seq 1 240); do          # at most ~4 min on a slow machine
        if ! kill -0 "$LS_PID" 2>/dev/null; then break; fi
        if "$LS_VENV/bin/python" - "$PORT" <<'EOF' 2>/dev/null; then ok=1; break; fi
import sys, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
urllib.request.urlopen(base + "/health", timeout=2)
req = urllib.request.Request(base + "/api/projects",
                             headers={"Authorization": "Token 0123456789abcdef0123456789abcdef01234567"})
urllib.request.urlopen(req, timeout=5)
EOF
        sleep 1
    done
    kill "$LS_PID" 2>/dev/null || true
    wait "$LS_PID" 2>/dev/null || true
    if [ "$ok" != 1 ]; then
        echo "setup-label-studio: Label Studio did not come up; log:" >&2
        tail -n 40 "$LOG" >&2 || true
        exit 1
    fi
    touch "$TEMPLATE.tmp/.ovsam-ready-$LS_VERSION"
    mv "$TEMPLATE.tmp" "$TEMPLATE"
fi
echo "setup-label-studio: pre-migrated data dir $TEMPLATE ($(( $(date +%s) - t0 )) s)"
