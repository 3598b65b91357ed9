"""Fixtures of the training/evaluation tests: synthetic data and a trained tiny model (once)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"

#: the synthetic set of the acceptance test (see configs/test/clip2sam_synthetic_tiny.yaml)
#: One object per image. The tiny decoder (32 wide, 4 mask channels) learns objectness and names
#: within the CPU budget, but choosing the prompted object among several takes it far longer
#: (measured with 1-2 objects per image after 300 steps: IoU 0.90 on single-object images, 0.46
#: on multi-object ones, box and point prompts alike; after 500 steps with 2-3 objects it begins
#: to localise: 0.75 on multi-object images).
SYNTH_KW = dict(min_objects=1, max_objects=1, min_radius=0.18, max_radius=0.30, background=(20, 90),
                train_base_only=True)


@pytest.fixture(autouse=True)
def _one_thread():
    """The CI box has 2 shared cores: one torch thread per process is fastest and deterministic."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Path:
    """Synthetic shapes: 160 training and 32 held-out images, 256 px, 8 classes (2 novel)."""
    from ovsam_core.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, {"train": 160, "val": 32}, seed=0, image_size=256, **SYNTH_KW)
    return root


@pytest.fixture(scope="session")
def trained(synth, tmp_path_factory):
    """The acceptance run: ovsam-test trained by `configs/test/clip2sam_synthetic_tiny.yaml`."""
    from ovsam_core.training import Clip2SamConfig, load_config, train_clip2sam

    work = tmp_path_factory.mktemp("clip2sam_run")
    cfg = load_config(Clip2SamConfig, CONFIGS / "test" / "clip2sam_synthetic_tiny.yaml", [
        f"data.images={synth / 'images' / 'train'}",
        f"data.annotations={synth / 'annotations' / 'instances_train.json'}",
        f"run.work_dir={work}", "run.progress=false", "run.threads=1"])
    t0 = time.perf_counter()
    res = train_clip2sam(cfg)
    seconds = time.perf_counter() - t0
    metrics = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    return {"result": res, "seconds": seconds, "work": work, "export": work / "export", "metrics": metrics,
            "config": cfg}


def tiny_clip2sam_config(synth: Path, work: Path, *overrides: str):
    """A short run of the tiny config (for DDP / resume tests)."""
    from ovsam_core.training import Clip2SamConfig, load_config

    return load_config(Clip2SamConfig, CONFIGS / "test" / "clip2sam_synthetic_tiny.yaml", [
        f"data.images={synth / 'images' / 'train'}",
        f"data.annotations={synth / 'annotations' / 'instances_train.json'}",
        f"run.work_dir={work}", "run.progress=false", "run.threads=1", *overrides])
