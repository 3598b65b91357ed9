"""Fixtures of the training/evaluation tests: synthetic data and a trained tiny model (once)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from training_helpers import SYNTH_KW, tiny_clip2sam_config


@pytest.fixture(autouse=True)
def _one_thread():
    """The CI box has 2 shared cores: one torch thread per process is fastest and deterministic."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Path:
    """Synthetic shapes: 160 training and 64 held-out images, 256 px, 8 classes (2 novel, which
    never appear in the training images)."""
    from ovsam_core.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, {"train": 160, "val": 64}, seed=0, image_size=256, **SYNTH_KW)
    return root


@pytest.fixture(scope="session")
def trained(synth, tmp_path_factory):
    """The acceptance run: ovsam-test trained by `configs/test/clip2sam_synthetic_tiny.yaml`."""
    from ovsam_core.training import train_clip2sam

    work = tmp_path_factory.mktemp("clip2sam_run")
    cfg = tiny_clip2sam_config(synth, work)
    t0 = time.perf_counter()
    res = train_clip2sam(cfg)
    seconds = time.perf_counter() - t0
    metrics = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    return {"result": res, "seconds": seconds, "work": work, "export": work / "export", "metrics": metrics,
            "config": cfg}
