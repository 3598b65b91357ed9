"""Evaluation prompts from ground truth: GT boxes and upstream's centre points.

Upstream (spec §3.2, §10.2-3): the GT mask is rescaled with nearest neighbour to the resized
image (long side = the model size, mmcv rounding), padded to the model frame, and the point is
the first maximum (raster order) of kornia's approximate distance transform, as integer
``(x, y)`` in the model frame. :func:`center_point_in_frame` returns the same point as
:func:`ovsam_core.geometry.center_point` but runs the transform only on the mask's bounding box
plus a one-pixel border (every window the full-frame cascade reads for a mask pixel lies
inside that crop, and background pixels never change), which is much faster on large frames.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from ..geometry import distance_transform
from ..preprocess import resized_size


def center_point_in_frame(mask: np.ndarray, frame: int) -> Tuple[int, int]:
    """Centre point of ``mask`` (already at the resized size) padded to ``frame`` x ``frame``."""
    h, w = mask.shape
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if not len(xs):
        return 0, 0  # the full transform is 0 everywhere: first maximum = (0, 0)
    y0, y1 = max(0, ys[0] - 1), min(max(frame, h), ys[-1] + 2)
    x0, x1 = max(0, xs[0] - 1), min(max(frame, w), xs[-1] + 2)
    crop = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
    src = mask[y0:min(y1, h), x0:min(x1, w)]
    crop[:src.shape[0], :src.shape[1]] = src
    dt = distance_transform(torch.from_numpy(1.0 - crop)[None, None])[0, 0]
    idx = int(torch.argmax(dt.flatten()))
    return x0 + idx % dt.shape[1], y0 + idx // dt.shape[1]


def center_points(masks: np.ndarray, frame: int) -> np.ndarray:
    """(K, 2) float centre points in original-image pixels for (K, H, W) GT masks.

    Each mask is rescaled (nearest) to the resized image of long side ``frame``; the point
    found there (integer, model frame) is mapped back by the per-axis resize factors.
    """
    import cv2

    k, h, w = masks.shape
    nh, nw = resized_size(h, w, frame, "round")
    out = np.zeros((k, 2), dtype=np.float32)
    for i, m in enumerate(masks):
        small = cv2.resize(m.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST).astype(bool)
        x, y = center_point_in_frame(small, frame)
        out[i] = (x * w / nw, y * h / nh)
    return out


def gt_boxes_xyxy(anns) -> np.ndarray:
    """(K, 4) ``x0, y0, x1, y1`` from the annotations' ``bbox`` (``x, y, w, h``)."""
    if not anns:
        return np.zeros((0, 4), dtype=np.float32)
    b = np.array([a["bbox"] for a in anns], dtype=np.float32)
    b[:, 2:] += b[:, :2]
    return b
