"""AdamW parameter groups and the learning-rate schedule of the upstream recipe."""
from __future__ import annotations

import math
from typing import Dict, List

import torch
from torch import nn

from .config import OptimConfig, ScheduleConfig

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def param_groups(model: nn.Module, cfg: OptimConfig) -> List[Dict]:
    """Trainable parameters in groups: weight decay ``x norm_decay_mult`` for the parameters of
    norm layers (nn.LayerNorm / BatchNorm / GroupNorm; not SAM's LayerNorm2d, as in mmengine),
    lr ``x backbone_lr_mult`` under ``backbone.``."""
    groups: Dict[tuple, Dict] = {}
    for mod_name, mod in model.named_modules():
        for p_name, p in mod.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            wd = cfg.weight_decay * (cfg.norm_decay_mult if isinstance(mod, _NORMS) else 1.0)
            lr_mult = cfg.backbone_lr_mult if (".backbone." in f".{full}") else 1.0
            key = (wd, lr_mult)
            g = groups.setdefault(key, {"params": [], "names": [], "weight_decay": wd, "lr_mult": lr_mult})
            g["params"].append(p)
            g["names"].append(full)
    if not groups:
        raise ValueError("nothing to train: no parameter requires grad (check model.trainable)")
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: OptimConfig, global_batch: int) -> torch.optim.Optimizer:
    lr = cfg.lr * (global_batch / cfg.base_batch_size if cfg.auto_scale_lr else 1.0)
    groups = param_groups(model, cfg)
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
        g["initial_lr"] = g["lr"]
        g.pop("names")
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


class LRFactor:
    """lr factor at iteration ``it``: linear warmup x (multistep by epoch | cosine by iteration)."""

    def __init__(self, cfg: ScheduleConfig, steps_per_epoch: int, total_steps: int) -> None:
        self.warmup_iters = cfg.warmup_iters
        self.warmup_factor = cfg.warmup_factor
        self.policy = cfg.policy
        self.milestones = [int(m) * steps_per_epoch for m in cfg.milestones]
        self.gamma = cfg.gamma
        self.eta_min_ratio = cfg.eta_min_ratio
        self.total = max(1, total_steps)

    def __call__(self, it: int) -> float:
        f = 1.0
        if self.warmup_iters > 0 and it < self.warmup_iters:
            f = self.warmup_factor + (1 - self.warmup_factor) * it / self.warmup_iters
        if self.policy == "multistep":
            f *= self.gamma ** sum(1 for m in self.milestones if it >= m)
        else:
            r = self.eta_min_ratio
            f *= r + (1 - r) * 0.5 * (1 + math.cos(math.pi * min(it, self.total) / self.total))
        return f


def total_steps(cfg: ScheduleConfig, steps_per_epoch: int) -> int:
    return int(cfg.max_iters) if cfg.max_iters else cfg.epochs * steps_per_epoch


def build_scheduler(opt: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int,
                    total: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, LRFactor(cfg, steps_per_epoch, total))
