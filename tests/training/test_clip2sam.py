"""CLIP2SAM training: the acceptance run, exact resume, 2-process gloo DDP = 1 process."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import torch

from training_helpers import CONFIGS, REPO, tiny_clip2sam_config
from ovsam_core.training import train_clip2sam

#: wall-clock budget of the acceptance training on the CI CPU
TRAIN_BUDGET_S = 180.0
#: DDP vs single process: max |loss difference| per step, relative to the loss
DDP_RTOL = 1e-5


def test_acceptance_tiny_model_learns_masks_and_names(trained, synth):
    """ovsam-test trained on synthetic COCO-format data: box-prompt mIoU >= 0.75 and accuracy >= 0.9
    on held-out images, over the training (base) classes, in under 3 minutes."""
    from ovsam_core.evaluation import run_eval

    print(f"training took {trained['seconds']:.1f} s for {trained['result']['step']} steps")
    assert trained["seconds"] < TRAIN_BUDGET_S
    res = run_eval(synth / "images" / "val", synth / "annotations" / "instances_val.json", model="ovsam-test",
                   weights_dir=trained["export"], prompts=("box",), progress=False)
    t1 = res["methods"]["ovsam-test (head)"]["table1"]["box"]
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in t1.items()})
    assert t1["n_base"] >= 40
    assert t1["miou_base"] >= 0.75
    assert t1["acc_base"] >= 0.9
    # a run leaves metrics, a loss plot, a checkpoint and the export
    work = trained["work"]
    assert (work / "loss.png").is_file() and (work / "checkpoints" / "latest").is_file()
    m = trained["metrics"]
    assert m[0]["step"] == 1 and m[-1]["step"] == trained["config"].schedule.max_iters
    assert {"loss", "loss_cls", "loss_mask", "loss_dice", "lr", "acc", "epoch", "time"} <= set(m[-1])
    assert sum(r["loss"] for r in m[-5:]) < 0.5 * sum(r["loss"] for r in m[:5])


def _losses(work):
    return {r["step"]: r for r in map(json.loads, (work / "metrics.jsonl").read_text().splitlines())}


SHORT = ["schedule.max_iters=6", "run.log_interval=1", "loss.num_points=256", "export.enabled=false",
         "data.max_images=32"]


def test_resume_continues_the_exact_loss_trajectory(synth, tmp_path):
    a = tmp_path / "a"
    train_clip2sam(tiny_clip2sam_config(synth, a, *SHORT, "run.checkpoint_interval=3", "run.batch_size=2"))
    assert (a / "checkpoints" / "step_00000003.pt").is_file()
    b = tmp_path / "b"
    shutil.copytree(a, b)
    (b / "checkpoints" / "latest").write_text("step_00000003.pt")
    (b / "checkpoints" / "step_00000006.pt").unlink()
    res = train_clip2sam(tiny_clip2sam_config(synth, b, *SHORT, "run.checkpoint_interval=3", "run.batch_size=2",
                                              "run.resume=auto"))
    assert res["step"] == 6
    la, lb = _losses(a), _losses(b)
    assert sorted(lb) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):
        for k in ("loss", "loss_cls", "loss_mask", "loss_dice", "lr"):
            assert la[step][k] == lb[step][k], (step, k)      # bit-exact
    ca = torch.load(a / "checkpoints" / "step_00000006.pt", weights_only=True)["model"]
    cb = torch.load(b / "checkpoints" / "step_00000006.pt", weights_only=True)["model"]
    assert all(torch.equal(ca[k], cb[k]) for k in ca)


def test_two_process_gloo_ddp_equals_one_process(synth, tmp_path):
    """Global batch 4: one process x 4 images vs 2 gloo processes x 2 images, 4 steps."""
    over = [*SHORT, "schedule.max_iters=4"]
    single = tmp_path / "single"
    train_clip2sam(tiny_clip2sam_config(synth, single, *over, "run.batch_size=4"))
    ddp = tmp_path / "ddp"
    sets = [f"data.images={synth / 'images' / 'train'}",
            f"data.annotations={synth / 'annotations' / 'instances_train.json'}",
            f"run.work_dir={ddp}", "run.progress=false", "run.threads=1", "run.batch_size=2", "run.device=cpu",
            "run.dist_backend=gloo", *over]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "ovsam_core.cli_train", "train", "clip2sam", str(CONFIGS / "test" / "clip2sam_synthetic_tiny.yaml")]
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ls, ld = _losses(single), _losses(ddp)
    assert sorted(ld) == [1, 2, 3, 4]
    worst = 0.0
    for step in ls:
        for k in ("loss", "loss_cls", "loss_mask", "loss_dice"):
            rel = abs(ls[step][k] - ld[step][k]) / max(abs(ls[step][k]), 1e-8)
            worst = max(worst, rel)
            assert rel <= DDP_RTOL, (step, k, ls[step][k], ld[step][k])
        assert ls[step]["lr"] == ld[step]["lr"]
    print(f"DDP vs single process: max relative loss difference {worst:.2e} (tolerance {DDP_RTOL:g})")
    ws = torch.load(single / "checkpoints" / "step_00000004.pt", weights_only=True)
    wd = torch.load(ddp / "checkpoints" / "step_00000004.pt", weights_only=True)
    assert ws["global_batch"] == wd["global_batch"] == 4 and wd["world_size"] == 2
    for k, v in ws["model"].items():
        assert torch.allclose(v, wd["model"][k], rtol=1e-3, atol=1e-5), k


def test_mixed_precision_path_runs(synth, tmp_path):
    """The autocast path (fp16 + grad scaler on GPU; bf16 here on the CPU) trains with finite losses."""
    train_clip2sam(tiny_clip2sam_config(synth, tmp_path, "schedule.max_iters=3", "run.log_interval=1",
                                        "loss.num_points=256", "export.enabled=false", "data.max_images=16",
                                        "run.amp=bf16"))
    rows = _losses(tmp_path)
    assert sorted(rows) == [1, 2, 3] and all(r["loss"] == r["loss"] and r["loss"] < 1e4 for r in rows.values())
