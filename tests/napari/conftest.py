"""Fixtures of the napari adapter tests.

Most tests drive the Qt-free controller with the tiny random ``ovsam-test`` model (labels are
arbitrary but deterministic). GUI tests (``test_widget.py``) need napari, a Qt binding,
pytest-qt and a real X server (pytest-xvfb starts Xvfb; Qt's offscreen platform cannot draw
napari layers); they skip when those are missing. Setup: ``.ci/setup-napari.sh``.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

# Import torch (and Triton, if installed) before any GL context exists: a Mesa GL driver loads
# libLLVM, and Triton imported after it crashes (see ovsam_plugins/napari/_torch_guard.py).
import ovsam_core  # noqa: E402,F401

VOCAB = ["cell", "nucleus", "square", "disc", "triangle", "sky"]


@pytest.fixture(scope="session", autouse=True)
def _ovsam_cache(tmp_path_factory):
    """Text classifiers of test vocabularies go to a temporary cache, not the user's."""
    if "OVSAM_CACHE_DIR" not in os.environ:
        os.environ["OVSAM_CACHE_DIR"] = str(tmp_path_factory.mktemp("ovsam-cache"))
    yield


@pytest.fixture(scope="session")
def predictor(_ovsam_cache):
    from ovsam_core import Predictor

    p = Predictor("ovsam-test", device="cpu", progress=False)
    p.classifier(VOCAB)  # warm the text classifier once
    return p


@pytest.fixture
def settings():
    from ovsam_core import AnnotatorSettings as Settings

    return Settings(model="ovsam-test", device="cpu", vocabulary=VOCAB, top_k=3)


@pytest.fixture
def blobs_u16():
    """A 16-bit image (300 x 400) with two bright objects."""
    img = np.full((300, 400), 500, np.uint16)
    yy, xx = np.mgrid[:300, :400]
    img[(yy - 120) ** 2 + (xx - 140) ** 2 < 40 ** 2] = 9000
    img[200:260, 250:370] = 6000
    return img
