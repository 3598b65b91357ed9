"""Helpers shared by the training tests (a plain module: test files import it by name, which a
second ``conftest`` module would shadow when the whole suite runs)."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"

#: The synthetic set of the acceptance test. One object per image: the tiny decoder (32 wide,
#: 4 mask channels) learns objectness and names within the CPU budget, but choosing the prompted
#: object among several takes it far longer (measured with 1-2 objects per image after 300 steps:
#: IoU 0.90 on single-object images, 0.46 on multi-object ones, box and point prompts alike; after
#: 500 steps with 2-3 objects it begins to localise: 0.75 on multi-object images).
SYNTH_KW = dict(min_objects=1, max_objects=1, min_radius=0.18, max_radius=0.30, background=(20, 90),
                train_base_only=True)


def tiny_clip2sam_config(synth: Path, work: Path, *overrides: str):
    """The tiny CLIP2SAM config on the synthetic set (plus overrides)."""
    from ovsam_core.training import Clip2SamConfig, load_config

    return load_config(Clip2SamConfig, CONFIGS / "test" / "clip2sam_synthetic_tiny.yaml", [
        f"data.images={synth / 'images' / 'train'}",
        f"data.annotations={synth / 'annotations' / 'instances_train.json'}",
        f"run.work_dir={work}", "run.progress=false", "run.threads=1", *overrides])
