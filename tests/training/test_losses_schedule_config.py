"""Point sampling and losses, the optimiser/schedule recipe, configs."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ovsam_core.training.config import (Clip2SamConfig, ConfigError, DistillConfig, load_config, parse_override,
                                        to_dict)
from ovsam_core.training.losses import clip2sam_losses, combine, point_sample, uncertain_points
from ovsam_core.training.schedule import LRFactor, build_optimizer, param_groups

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_point_sample_matches_grid_sample_and_indexes_maps():
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 17, 23, generator=g)
    coords = torch.rand(3, 50, 2, generator=g) * 1.2 - 0.1       # some points outside: 0 there
    ref = F.grid_sample(maps[:, None], (coords * 2 - 1)[:, :, None], align_corners=False)[:, 0, :, 0]
    assert torch.allclose(point_sample(maps, coords), ref, atol=1e-5)
    idx = torch.tensor([2, 2, 0, 1])
    c4 = torch.rand(4, 9, 2, generator=g)
    assert torch.allclose(point_sample(maps, c4, idx), point_sample(maps[idx], c4), atol=1e-6)
    masks = maps > 0                                              # bool maps (GT) work too
    assert torch.allclose(point_sample(masks, coords), point_sample(masks.float(), coords))


def test_uncertain_points_pick_the_most_uncertain():
    logits = torch.full((2, 32, 32), 10.0)
    logits[:, :, 16:] = -10.0
    logits[:, :, 10:22] = 0.0                                     # the uncertain band (~37% of candidates)
    pts = uncertain_points(logits, 100, 3.0, 0.75, torch.Generator().manual_seed(1))
    assert pts.shape == (2, 100, 2) and pts.min() >= 0 and pts.max() <= 1
    imp = pts[:, :75, 0] * 32 - 0.5                               # the 75 most uncertain come first
    assert ((imp >= 9.5) & (imp <= 21.5)).all()
    rand = pts[:, 75:, 0] * 32 - 0.5                              # then 25 uniform points
    assert ((rand < 9.5) | (rand > 21.5)).any()


def test_losses_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])     # 2 classes + background
    labels = torch.tensor([0, 1])
    mask_logits = torch.zeros(2, 4, 4)
    gt = torch.zeros(1, 4, 4, dtype=torch.bool)
    gt[0, :, :2] = True
    coords = torch.tensor([[[0.125, 0.5], [0.875, 0.5]]] * 2)     # one inside, one outside
    parts = clip2sam_losses(logits, labels, mask_logits, gt, torch.tensor([0, 0]), coords, bg_weight=0.1)
    nll = F.cross_entropy(logits, labels, reduction="sum")
    assert torch.isclose(parts.sums["cls"], nll) and parts.counts["cls"] == 2
    assert torch.isclose(parts.sums["mask"], torch.tensor(4 * math.log(2)))      # BCE at p=0.5
    dice = 1 - (2 * 0.5 + 1) / (1.0 + 1 + 1)                                     # per mask
    assert torch.isclose(parts.sums["dice"], torch.tensor(2 * dice)) and parts.counts["dice"] == 2
    terms = combine(parts.sums, parts.counts, {"cls": 2.0, "mask": 5.0, "dice": 5.0})
    assert torch.isclose(terms["loss"], 2 * nll / 2 + 5 * math.log(2) + 5 * dice)
    # the background weight enters the normaliser only when background is a target (never upstream)
    p2 = clip2sam_losses(logits, torch.tensor([2, 0]), mask_logits, gt, torch.tensor([0, 0]), coords, bg_weight=0.1)
    assert torch.isclose(p2.counts["cls"], torch.tensor(1.1))


def test_defaults_are_the_upstream_recipe():
    c = Clip2SamConfig()
    assert (c.optim.lr, c.optim.weight_decay, c.optim.clip_grad, c.optim.norm_decay_mult) == (1e-4, 0.05, 0.01, 0.0)
    assert (c.schedule.epochs, c.schedule.milestones, c.schedule.gamma, c.schedule.warmup_iters,
            c.schedule.warmup_factor) == (12, (8, 11), 0.1, 500, 0.001)
    assert (c.loss.cls_weight, c.loss.bg_weight, c.loss.mask_weight, c.loss.dice_weight, c.loss.num_points,
            c.loss.oversample_ratio, c.loss.importance_sample_ratio, c.loss.roi_size) == \
        (2.0, 0.1, 5.0, 5.0, 12544, 3.0, 0.75, 12)
    assert (c.data.num_prompts, c.data.scale_range, c.data.image_size, c.run.batch_size) == (40, (0.9, 2.0), 1024, 2)
    assert c.model.trainable == ("fpn_neck", "mask_decoder")
    d = DistillConfig()
    assert (d.optim.lr, d.optim.clip_grad, d.schedule.epochs, d.schedule.policy, d.schedule.eta_min_ratio) == \
        (1e-4, 5.0, 24, "cosine", 0.01)
    assert d.teacher.variant == "vit_h" and d.model.trainable == ("neck",)


@pytest.mark.parametrize("name,cls", [("clip2sam_coco_rn50x16.yaml", Clip2SamConfig),
                                      ("clip2sam_lvis_rn50x16.yaml", Clip2SamConfig),
                                      ("sam2clip_vith_rn50x16.yaml", DistillConfig),
                                      ("test/clip2sam_synthetic_tiny.yaml", Clip2SamConfig),
                                      ("test/distill_synthetic_tiny.yaml", DistillConfig)])
def test_shipped_configs_load(name, cls):
    cfg = load_config(cls, CONFIGS / name)
    if not name.startswith("test/"):   # the shipped recipes keep every upstream default
        ref = to_dict(cls())
        got = to_dict(cfg)
        for sec in ("optim", "schedule", "loss"):
            if sec in ref:
                assert got[sec] == ref[sec], sec
    if name == "clip2sam_lvis_rn50x16.yaml":
        assert cfg.data.scale_range == (0.1, 2.0) and cfg.data.vocabulary == "lvis" and cfg.loss.roi_size == 12


def test_config_errors_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'optim.lrr'"):
        load_config(Clip2SamConfig, overrides=["optim.lrr=1"])
    with pytest.raises(ConfigError, match="policy"):
        load_config(Clip2SamConfig, overrides=["schedule.policy=linear"])
    assert parse_override("a.b=[1, 2]") == {"a": {"b": [1, 2]}}
    cfg = load_config(Clip2SamConfig, overrides=["optim.lr=3e-4", "model.trainable=[neck]", "run.resume=null"])
    assert cfg.optim.lr == 3e-4 and cfg.model.trainable == ("neck",) and cfg.run.resume is None
    (tmp_path / "child.yaml").write_text(f"_base_: {CONFIGS / 'clip2sam_coco_rn50x16.yaml'}\nrun:\n  batch_size: 3\n")
    c = load_config(Clip2SamConfig, tmp_path / "child.yaml")
    assert c.run.batch_size == 3 and c.data.vocabulary == "coco"


def test_schedule_and_param_groups():
    from ovsam_core.training.config import ScheduleConfig, OptimConfig
    f = LRFactor(ScheduleConfig(warmup_iters=500, milestones=(8, 11)), steps_per_epoch=100, total_steps=1200)
    assert f(0) == pytest.approx(0.001) and f(250) == pytest.approx(0.5005) and f(500) == 1.0
    assert f(799) == 1.0 and f(800) == pytest.approx(0.1) and f(1100) == pytest.approx(0.01)
    c = LRFactor(ScheduleConfig(policy="cosine", warmup_iters=0, eta_min_ratio=0.01), 10, 100)
    assert c(0) == 1.0 and c(50) == pytest.approx(0.505) and c(100) == pytest.approx(0.01)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    from segment_anything.modeling.common import LayerNorm2d
    model.add_module("ln2d", LayerNorm2d(3))
    groups = {tuple(g["names"]): g["weight_decay"] for g in param_groups(model, OptimConfig())}
    assert groups[("1.weight", "1.bias")] == 0.0                       # nn.LayerNorm: no decay
    assert groups[("0.weight", "0.bias", "ln2d.weight", "ln2d.bias")] == 0.05   # LayerNorm2d decays (mmengine)
    opt = build_optimizer(model, OptimConfig(auto_scale_lr=True), global_batch=32)
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-4)
