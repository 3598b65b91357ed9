"""The shipped demo model `ovsam-shapes` knows the right answers: names and masks on held-out
synthetic scenes (seeds never used in training), from prompts and without them.

The quality thresholds are the ones the model card and README promise. A slow test retrains a
shortened schedule of `configs/demo_shapes.yaml` with the current code and checks that its
quality is in the same range, so the shipped file cannot silently drift from the code.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ovsam_core import Prompt
from ovsam_core.cli import main
from ovsam_core.evaluation.metrics import mask_iou
from ovsam_core.results import rle_to_mask
from ovsam_core.training.data import decode_segmentation

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO / "examples" / "scene.png"
#: held-out seed of the evaluation scenes (training uses seed 0, split "train")
EVAL_SEED = 1000


def scene_truth():
    """[(name, (H, W) bool mask, centre point (x, y))] of examples/scene.png."""
    from ovsam_core.geometry import center_point

    doc = json.loads((REPO / "examples" / "scene.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    im = doc["images"][0]
    out = []
    for a in doc["annotations"]:
        m = decode_segmentation(a["segmentation"], im["height"], im["width"])
        out.append((names[a["category_id"]], m, center_point(m)))
    return out


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """Held-out scenes: 'mixed' (all 8 classes, 2 of them novel) and 'base' (base classes only)."""
    from ovsam_core.synthetic import CATEGORIES, generate_split

    root = tmp_path_factory.mktemp("shapes_eval")
    mixed = generate_split(root / "mixed", "val", 60, EVAL_SEED)
    base = generate_split(root / "base", "val", 12, EVAL_SEED,
                          classes=[c.name for c in CATEGORIES if c.split == "base"])
    return {"mixed": mixed, "base": base}


def test_shipped_without_download(tmp_path):
    """Loads from the package with the hub unreachable and an empty cache; listed with its card."""
    code = ("from ovsam_core import load_model; m = load_model('ovsam-shapes', download=False); "
            "print(m.spec.vocabulary, m.weights_id)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OVSAM_CACHE_DIR": str(tmp_path / "empty-cache")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("shapes ")
    listing = subprocess.run([sys.executable, "-m", "ovsam_core.cli", "models"], env=env, capture_output=True,
                             text=True, timeout=300).stdout
    assert "ovsam-shapes" in listing and "shipped in the package, no download" in listing
    card = subprocess.run([sys.executable, "-m", "ovsam_core.cli", "models", "--card", "ovsam-shapes"], env=env,
                          capture_output=True, text=True, timeout=300).stdout
    assert "configs/demo_shapes.yaml" in card and "only" in card and "mIoU" in card


def test_damaged_package_file_is_refused(tmp_path, monkeypatch):
    import dataclasses

    from ovsam_core.weights.checkpoint import CheckpointError
    from ovsam_core.weights.loader import packaged_weights_path
    from ovsam_core.weights.registry import get_model_spec

    spec = dataclasses.replace(get_model_spec("ovsam-shapes"), packaged_sha256="0" * 64)
    with pytest.raises(CheckpointError, match="reinstall"):
        packaged_weights_path(spec)


def test_readme_first_command_names_every_object(tmp_path, capsys):
    """`ovsam predict examples/scene.png --model ovsam-shapes --point ...` (the README's command)."""
    truth = scene_truth()
    args = ["predict", str(SCENE), "--model", "ovsam-shapes", "--out", str(tmp_path / "r.json"),
            "--overlay", str(tmp_path / "o.png"), "-q"]
    for _, _, (x, y) in truth:
        args += ["--point", f"{x},{y}"]
    assert main(args) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    for (name, gt, _), obj in zip(truth, doc["objects"]):
        assert obj["label"] == name
        assert mask_iou(rle_to_mask(obj["mask"]), gt) >= 0.8, name


def test_box_and_point_prompts_on_the_scene(shapes):
    truth = scene_truth()
    prompts = []
    for _, m, (x, y) in truth:
        ys, xs = np.nonzero(m)
        prompts += [Prompt.from_box(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), Prompt.from_points([(x, y)])]
    pred = shapes.predict(SCENE, prompts)
    for k, obj in enumerate(pred):
        name, gt, _ = truth[k // 2]
        assert obj.label == name and mask_iou(obj.mask, gt) >= 0.8, (k, obj.label, name)


def test_heldout_quality_table(shapes, heldout):
    """The model card's table on held-out scenes (box and centre-point prompts, base classes)."""
    from ovsam_core.evaluation import run_eval

    split = heldout["mixed"]
    res = run_eval(split["images"], split["annotations"], model="ovsam-shapes", prompts=("box", "point"),
                   progress=False)
    t1 = res["methods"]["ovsam-shapes (head)"]["table1"]
    print({p: {k: round(v, 3) for k, v in t.items() if isinstance(v, float)} for p, t in t1.items()})
    assert t1["box"]["n_base"] >= 80 and t1["box"]["n_novel"] >= 20
    assert t1["box"]["miou_base"] >= 0.85 and t1["box"]["acc_base"] >= 0.95
    assert t1["point"]["miou_base"] >= 0.75 and t1["point"]["acc_base"] >= 0.90


def test_everything_and_find_on_heldout_base_scenes(shapes, heldout):
    """Segment everything: recall >= 0.9 (IoU >= 0.5 and the right name), precision >= 0.85;
    find one base class: recall and precision >= 0.9."""
    from ovsam_core.evaluation.auto import auto_markdown, evaluate_auto

    split = heldout["base"]
    ev = evaluate_auto(shapes, split["images"], split["annotations"], task="everything", points_per_side=16)
    print(auto_markdown(ev))
    assert ev["base"]["gt"] >= 20
    assert ev["base"]["recall"] >= 0.9 and ev["base"]["precision"] >= 0.85
    fd = evaluate_auto(shapes, split["images"], split["annotations"], task="find",
                       queries=["red circle", "striped ring"], points_per_side=16)
    print(auto_markdown(fd))
    assert fd["base"]["gt"] >= 5
    assert fd["base"]["recall"] >= 0.9 and fd["base"]["precision"] >= 0.9


@pytest.mark.slow
def test_retrain_short_schedule_reaches_the_same_range(tmp_path, heldout):
    """`ovsam train clip2sam configs/demo_shapes.yaml` with a shortened schedule (600 of 3000
    steps, 200 images): box-prompt quality already near the shipped model's."""
    from ovsam_core.evaluation import run_eval
    from ovsam_core.training import Clip2SamConfig, load_config, train_clip2sam

    cfg = load_config(Clip2SamConfig, REPO / "configs" / "demo_shapes.yaml", [
        f"run.work_dir={tmp_path / 'run'}", "run.progress=false", "schedule.max_iters=600",
        "data.synthetic.num_images=200", "run.checkpoint_interval=0"])
    train_clip2sam(cfg)
    export = tmp_path / "run" / "export"
    assert (export / "ovsam-shapes.safetensors").is_file()
    split = heldout["mixed"]
    res = run_eval(split["images"], split["annotations"], model="ovsam-shapes", weights_dir=export,
                   prompts=("box",), progress=False)
    t1 = res["methods"]["ovsam-shapes (head)"]["table1"]["box"]
    print({k: round(v, 3) for k, v in t1.items() if isinstance(v, float)})
    assert t1["miou_base"] >= 0.75 and t1["acc_base"] >= 0.85
