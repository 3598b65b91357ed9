#!/usr/bin/env bash
# Install what the napari adapter's GUI tests need (tests/napari), on Debian 12 as root.
#
#   .ci/setup-napari.sh            # then: .venv/bin/python -m pytest tests/napari
#
# Idempotent: apt packages already present are not fetched again, pip skips what is installed.
# Qt 6's xcb platform plugin needs libxcb-icccm4 and libxcb-keysyms1 (+ friends) on Debian; the
# tests draw napari layers under a real X server (Xvfb, started by pytest-xvfb): Qt's
# "offscreen" platform has no OpenGL context and cannot draw layers.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    xvfb xauth
    libgl1 libgl1-mesa-dri libegl1 libglib2.0-0 libdbus-1-3 libfontconfig1 fonts-dejavu-core
    libx11-xcb1 libxrender1 libxi6 libsm6 libice6 libxkbcommon0 libxkbcommon-x11-0
    libxcb1 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render0 libxcb-render-util0
    libxcb-xinerama0 libxcb-xkb1 libxcb-shape0 libxcb-cursor0 libxcb-randr0 libxcb-xfixes0
    libxcb-sync1 libxcb-shm0 libxcb-glx0
)
# a fresh machine without the project's venv also needs the venv module
[[ -x .venv/bin/python ]] || APT_PACKAGES+=(python3-venv)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
# The napari extra (napari, magicgui, qtpy, zarr) + one Qt binding + the GUI test plugins.
.venv/bin/pip install -q -c constraints.txt -e ".[napari]" pyqt6 pytest-qt pytest-xvfb
