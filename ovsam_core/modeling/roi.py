"""RoI helpers: tight boxes of binary masks, FPN level assignment and multi-level RoIAlign.

Boxes are ``(x0, y0, x1, y1)`` float tensors in the frame of the feature pyramid's input
(the model frame, ``image_size`` pixels). Semantics follow the mmdet/mmcv operators that
upstream uses; the code is our own.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torchvision.ops import roi_align


def mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of binary masks, ``[x_min, y_min, x_max + 1, y_max + 1]``.

    Args:
        masks: (N, H, W) bool.
    Returns:
        (N, 4) float32 in the masks' pixel grid; ``(0, 0, 0, 0)`` for an empty mask.
    """
    n, h, w = masks.shape
    cols = masks.any(dim=1)  # (N, W)
    rows = masks.any(dim=2)  # (N, H)
    xs = torch.arange(w, device=masks.device)
    ys = torch.arange(h, device=masks.device)
    x0 = torch.where(cols, xs, w).amin(dim=1)
    x1 = torch.where(cols, xs, -1).amax(dim=1) + 1
    y0 = torch.where(rows, ys, h).amin(dim=1)
    y1 = torch.where(rows, ys, -1).amax(dim=1) + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)
    empty = ~(cols.any(dim=1))
    return boxes.masked_fill(empty[:, None], 0.0)


def assign_levels(boxes: torch.Tensor, num_levels: int, finest_scale: float = 56.0) -> torch.Tensor:
    """FPN level of each box: ``clamp(floor(log2(sqrt(w*h) / finest_scale + 1e-6)), 0, L-1)``.

    With ``finest_scale=56``: sqrt(area) < 112 -> level 0 (stride 4), [112, 224) -> 1,
    [224, 448) -> 2, >= 448 -> 3.
    """
    scale = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1).long()


def multilevel_roi_align(
    feats: Sequence[torch.Tensor],
    boxes: torch.Tensor,
    output_size: int,
    strides: Sequence[int],
    finest_scale: float = 56.0,
) -> torch.Tensor:
    """RoIAlign (aligned, adaptive sampling) of each box on its assigned pyramid level.

    Every box is pooled on every level and its own level is selected with ``torch.where``:
    the same values as pooling per level, without data-dependent control flow (so it also
    exports to ONNX); RoIAlign is tiny next to the decoder.

    Args:
        feats: pyramid levels, each (1, C, H_l, W_l), all of one image.
        boxes: (N, 4) in the model frame.
    Returns:
        (N, C, output_size, output_size).
    """
    rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
    levels = assign_levels(boxes, len(feats), finest_scale)[:, None, None, None]
    out = None
    for lvl, (feat, stride) in enumerate(zip(feats, strides)):
        pooled = roi_align(feat, rois, (output_size, output_size), spatial_scale=1.0 / stride,
                           sampling_ratio=0, aligned=True)
        out = pooled if out is None else torch.where(levels == lvl, pooled, out)
    return out
