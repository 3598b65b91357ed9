"""Geometry helpers for prompts derived from ground truth (evaluation and training).

* :func:`polygons_to_mask` rasterises COCO polygons with pycocotools (the COCO convention).
* :func:`distance_transform` is a plain-PyTorch cascaded-convolution approximation of the
  Euclidean distance transform (Pham et al. 2021, "DTLayer"), the algorithm upstream's
  evaluation uses (through kornia) to pick a point prompt inside a ground-truth mask.
* :func:`center_point` is that point: the first maximum, in raster order, of the distance of
  each mask pixel to the background.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """COCO polygons (each a flat ``[x0, y0, x1, y1, ...]`` list) -> (H, W) bool mask."""
    from pycocotools import mask as mask_utils

    rles = mask_utils.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def distance_transform(image: torch.Tensor, kernel_size: int = 3, h: float = 0.35) -> torch.Tensor:
    """Approximate distance of every pixel to the nearest source pixel (value 1).

    Args:
        image: (B, C, H, W) float, 1 at sources and 0 elsewhere.
        kernel_size: odd window of each cascade step; h: soft-minimum temperature.
    Returns:
        (B, C, H, W) distances (0 at sources). Borders are replicated.

    Each step convolves the set of reached pixels with ``exp(-d/h)`` (d = tap distance), turns
    the response into a distance ``-h log(.)``, and adds ``step * (kernel_size // 2)`` to the
    pixels it reaches, until no pixel changes.
    """
    if kernel_size % 2 == 0 or kernel_size < 3:
        raise ValueError(f"kernel_size must be an odd integer >= 3, got {kernel_size}")
    b, c, hh, ww = image.shape
    k_half = kernel_size // 2
    coords = torch.arange(kernel_size, dtype=image.dtype) - k_half
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    kernel = torch.exp(-torch.sqrt(gx ** 2 + gy ** 2) / h)
    weight = kernel.expand(c, 1, kernel_size, kernel_size).to(image.device)
    out = torch.zeros_like(image)
    reached = image.clamp(0, 1)
    for step in range(math.ceil(max(hh, ww) / k_half)):
        padded = F.pad(reached, (k_half, k_half, k_half, k_half), mode="replicate")
        resp = F.conv2d(padded, weight, groups=c)
        positive = resp > 0
        dist = -h * torch.log(torch.where(positive, resp, torch.ones_like(resp)))
        dist = torch.nan_to_num(torch.where(positive, dist, torch.zeros_like(dist)), nan=0.0, posinf=0.0, neginf=0.0)
        new = dist > 0
        if not bool(new.any()):
            break
        out = out + (step * k_half + dist) * new.to(out.dtype)
        reached = torch.where(new, torch.ones_like(reached), reached)
    return out


def center_point(mask: np.ndarray, pad_to: Tuple[int, int] | None = None) -> Tuple[int, int]:
    """The most interior pixel of a binary mask, as integer ``(x, y)``.

    Args:
        mask: (H, W) bool.
        pad_to: optional (H', W') >= (H, W); the mask is padded with background at the
            bottom/right first (upstream pads to the model frame; the result is the same for
            masks that do not touch the bottom/right border).
    """
    m = torch.from_numpy(np.ascontiguousarray(mask)).float()
    if pad_to is not None:
        m = F.pad(m, (0, pad_to[1] - m.shape[1], 0, pad_to[0] - m.shape[0]), value=0.0)
    dt = distance_transform((1.0 - m)[None, None])[0, 0]
    idx = int(torch.argmax(dt.flatten()))
    return idx % dt.shape[1], idx // dt.shape[1]
