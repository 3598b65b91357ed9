"""CLIP2SAM losses: weighted cross-entropy, and BCE + dice on uncertainty-sampled points.

The recipe (spec §5.2): classification CE with weight 2 and a background class weight of 0.1;
mask BCE (weight 5) and dice (weight 5, eps 1) computed on ``num_points`` points per mask,
of which ``importance_sample_ratio`` are the most uncertain (|logit| smallest) among
``oversample_ratio * num_points`` uniform candidates and the rest uniform. The point sampling
here is our own implementation (bilinear, ``align_corners=False`` convention, zero outside).

Every loss is returned as a **sum and a count**, so that the training loop can normalise by
counts summed over all processes: a DDP run then computes exactly the loss (and gradient) of a
single-process run with the same global batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F


def point_sample(maps: torch.Tensor, coords: torch.Tensor, index: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Bilinear values of 2-D maps at normalised points.

    Args:
        maps: (M, H, W) float or bool maps.
        coords: (N, P, 2) points ``(x, y)`` in [0, 1] over the whole map (pixel centres at
            ``(i + 0.5) / W``, i.e. ``grid_sample(align_corners=False)``); outside is 0.
        index: (N,) which map each row samples (default ``arange(N)``, needs M == N).
    Returns:
        (N, P) float (differentiable w.r.t. ``maps``).
    """
    m, h, w = maps.shape
    n, p, _ = coords.shape
    if index is None:
        if m != n:
            raise ValueError(f"{m} maps for {n} point sets: pass index")
        index = torch.arange(n, device=maps.device)
    values = maps.float() if not maps.is_floating_point() else maps
    x = coords[..., 0] * w - 0.5
    y = coords[..., 1] * h - 0.5
    x0 = torch.floor(x)
    y0 = torch.floor(y)
    wx1 = (x - x0).to(values.dtype)
    wy1 = (y - y0).to(values.dtype)
    x0 = x0.long()
    y0 = y0.long()
    flat = values.reshape(m, h * w)
    base = index.to(maps.device).reshape(n, 1)
    out = 0.0
    for dy, wy in ((0, 1 - wy1), (1, wy1)):
        for dx, wx in ((0, 1 - wx1), (1, wx1)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            lin = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1))
            v = flat[base.expand(n, p), lin]
            out = out + v * wx * wy * inside.to(values.dtype)
    return out


def uncertain_points(logits: torch.Tensor, num_points: int, oversample_ratio: float,
                     importance_sample_ratio: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(N, P, 2) points: the most uncertain of ``oversample_ratio * P`` random candidates
    (``importance_sample_ratio * P`` of them) plus uniform random points for the rest.

    Args:
        logits: (N, H, W) mask logits (no gradient is needed or kept).
        generator: a CPU generator (points are drawn on the CPU, then moved to the logits' device).
    """
    n = logits.shape[0]
    n_cand = int(num_points * oversample_ratio)
    n_imp = int(importance_sample_ratio * num_points)
    n_rand = num_points - n_imp
    cand = torch.rand(n, n_cand, 2, generator=generator).to(logits.device)
    rand = torch.rand(n, n_rand, 2, generator=generator).to(logits.device)
    with torch.no_grad():
        uncertainty = -point_sample(logits.detach().float(), cand).abs()
        idx = uncertainty.topk(n_imp, dim=1).indices
    imp = torch.gather(cand, 1, idx[..., None].expand(-1, -1, 2))
    return torch.cat([imp, rand], dim=1)


@dataclass
class LossParts:
    """Sums and counts of each loss term (see module docstring)."""

    sums: Dict[str, torch.Tensor]
    counts: Dict[str, torch.Tensor]


def clip2sam_losses(
    cls_logits: torch.Tensor,
    labels: torch.Tensor,
    mask_logits: torch.Tensor,
    gt_masks: torch.Tensor,
    gt_index: torch.Tensor,
    point_coords: torch.Tensor,
    bg_weight: float = 0.1,
) -> LossParts:
    """Loss sums/counts for N prompts.

    Args:
        cls_logits: (N, C + 1), background last; labels: (N,) in [0, C].
        mask_logits: (N, h, w) low-resolution logits over the padded frame.
        gt_masks: (M, S, S) bool GT masks over the same frame; gt_index: (N,) row per prompt.
        point_coords: (N, P, 2) from :func:`uncertain_points`.
    """
    n_cls = cls_logits.shape[1]
    weight = torch.ones(n_cls, device=cls_logits.device, dtype=torch.float32)
    weight[-1] = bg_weight
    nll = F.cross_entropy(cls_logits.float(), labels, reduction="none")
    w = weight[labels]
    pred = point_sample(mask_logits.float(), point_coords)
    with torch.no_grad():
        target = point_sample(gt_masks, point_coords, gt_index).to(pred.dtype)
    bce = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
    prob = pred.sigmoid()
    dice = 1 - (2 * (prob * target).sum(1) + 1) / (prob.sum(1) + target.sum(1) + 1)
    f = lambda v: torch.as_tensor(float(v), device=cls_logits.device)  # noqa: E731
    return LossParts(
        sums={"cls": (w * nll).sum(), "mask": bce.sum(), "dice": dice.sum()},
        counts={"cls": w.sum().detach(), "mask": f(bce.numel()), "dice": f(dice.numel())},
    )


def accuracy(cls_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy over the foreground classes (background column excluded)."""
    if labels.numel() == 0:
        return cls_logits.new_zeros(())
    return (cls_logits[:, :-1].argmax(-1) == labels).float().mean()


def combine(parts_sums: Dict[str, torch.Tensor], counts: Dict[str, torch.Tensor],
            weights: Dict[str, float]) -> Dict[str, torch.Tensor]:
    """Weighted, normalised terms ``w * sum / max(count, 1)`` and their total ``loss``."""
    out = {k: weights[k] * parts_sums[k] / counts[k].clamp(min=1.0) for k in parts_sums}
    out["loss"] = sum(out.values())
    return out
