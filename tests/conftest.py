"""Shared fixtures: the parity directory and its generated weights (once per session).

Also loads ``strict_skips`` (``OVSAM_REQUIRE_HOSTS=1``: unexpected skips fail; skip summary).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import strict_skips
from parity_paths import parity_dir


def pytest_configure(config) -> None:
    if not config.pluginmanager.is_registered(strict_skips):
        config.pluginmanager.register(strict_skips, "ovsam-strict-skips")


def require_parity() -> Path:
    d = parity_dir()
    if not (d / "make_weights.py").is_file():
        pytest.skip(f"golden parity vectors not found at {d} (set OVSAM_PARITY_DIR)")
    return d


@pytest.fixture(scope="session")
def parity_weights_dir(tmp_path_factory) -> Path:
    """Fake checkpoints in the official file layouts (~2.3 GB, ~20 s), in a temp dir."""
    d = require_parity()
    out = tmp_path_factory.mktemp("parity_weights")
    subprocess.run([sys.executable, str(d / "make_weights.py"), str(out), "--demo"],
                   check=True, stdout=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="session")
def shapes():
    """The packaged, trained ``ovsam-shapes`` model (fp32, CPU), loaded once per session."""
    from ovsam_core import Predictor

    return Predictor("ovsam-shapes", device="cpu", dtype="fp32", progress=False)
