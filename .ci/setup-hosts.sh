#!/usr/bin/env bash
# Installs the host applications the adapter tests run against (FiftyOne + its MongoDB,
# napari + Qt + Xvfb, a Label Studio server in its own venv). Idempotent; needs .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
for host in fiftyone napari label-studio; do
    script=".ci/setup-$host.sh"
    if [ -f "$script" ]; then
        echo "== setting up $host"
        bash "$script"
    fi
done
