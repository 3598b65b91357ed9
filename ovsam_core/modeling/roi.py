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
    static: bool = False,
) -> torch.Tensor:
    """RoIAlign (aligned, adaptive sampling) of each box on its assigned pyramid level.

    Args:
        feats: pyramid levels, each (1, C, H_l, W_l), all of one image.
        boxes: (N, 4) in the model frame.
        static: pool every box on every level and select its own level with ``torch.where``
            (no data-dependent control flow, for ONNX export). Same values, but much slower for
            large boxes: adaptive sampling takes ~(side / stride / S)^2 samples per bin on the
            fine levels. Default: pool each level's boxes only.
    Returns:
        (N, C, output_size, output_size).
    """
    rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
    levels = assign_levels(boxes, len(feats), finest_scale)
    size = (output_size, output_size)
    if static:
        out = None
        for lvl, (feat, stride) in enumerate(zip(feats, strides)):
            pooled = roi_align(feat, rois, size, spatial_scale=1.0 / stride, sampling_ratio=0, aligned=True)
            out = pooled if out is None else torch.where(levels[:, None, None, None] == lvl, pooled, out)
        return out
    out = feats[0].new_zeros((boxes.shape[0], feats[0].shape[1], output_size, output_size))
    for lvl, (feat, stride) in enumerate(zip(feats, strides)):
        idx = torch.nonzero(levels == lvl, as_tuple=True)[0]
        if idx.numel():
            out[idx] = roi_align(feat, rois[idx], size, spatial_scale=1.0 / stride, sampling_ratio=0, aligned=True)
    return out
