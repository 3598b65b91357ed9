"""Imported first by the GUI test modules: skips them (at collection) where napari, a Qt binding,
pytest-qt or a real X server are missing (pytest-xvfb starts Xvfb; Qt's offscreen platform cannot
draw napari layers). Setup: ``.ci/setup-napari.sh``."""
from __future__ import annotations

import os
import sys

import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")
if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    pytest.skip("no X server: install Xvfb and pytest-xvfb (.ci/setup-napari.sh)", allow_module_level=True)
if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
    pytest.skip("Qt's offscreen platform cannot draw napari layers; run under Xvfb", allow_module_level=True)
