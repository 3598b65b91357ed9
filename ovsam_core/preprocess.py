"""Image pre-processing into the model frame, and the mapping back.

The model frame is the image resized so that its long side is ``image_size`` (1024), then
normalised with the SAM/ImageNet statistics (on 0-255 RGB; not CLIP's) and zero-padded at the
bottom/right to ``image_size`` x ``image_size``. Two resizers reproduce the two upstream paths:

* ``"pil"`` (the public demo): size ``int(side * scale)``, PIL bilinear (antialiased).
* ``"cv2"`` (the evaluation code): size ``int(side * scale + 0.5)``, OpenCV bilinear.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class FrameTransform:
    """Original image (H, W) -> resized (h, w) inside the padded ``size`` x ``size`` frame."""

    orig_hw: Tuple[int, int]
    resized_hw: Tuple[int, int]
    size: int

    @property
    def scale_xy(self) -> Tuple[float, float]:
        """Per-axis factors original -> model frame (x, y)."""
        return (self.resized_hw[1] / self.orig_hw[1], self.resized_hw[0] / self.orig_hw[0])

    def to_model(self, xy: torch.Tensor) -> torch.Tensor:
        """(..., 2k) original-pixel coordinates (x, y, x, y, ...) -> model frame."""
        sx, sy = self.scale_xy
        f = xy.new_tensor([sx, sy]).repeat(xy.shape[-1] // 2)
        return xy * f

    def to_original(self, xy: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_model`."""
        sx, sy = self.scale_xy
        f = xy.new_tensor([sx, sy]).repeat(xy.shape[-1] // 2)
        return xy / f


def resized_size(h: int, w: int, size: int, rounding: str) -> Tuple[int, int]:
    """(h, w) with the long side at ``size``: ``"trunc"`` (demo) or ``"round"`` (eval)."""
    scale = size / max(h, w)
    # max(1, .): a very thin image keeps at least one row/column (upstream would fail there)
    if rounding == "trunc":
        return max(1, int(h * scale)), max(1, int(w * scale))
    return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))


def resize_pil(image: Image.Image, size: int) -> np.ndarray:
    """Demo resize: RGB PIL image -> (h, w, 3) uint8 with the long side at ``size``."""
    h, w = resized_size(image.height, image.width, size, "trunc")
    return np.asarray(image.convert("RGB").resize((w, h), Image.Resampling.BILINEAR))


def resize_cv2(image: np.ndarray, size: int) -> np.ndarray:
    """Evaluation resize (mmcv ``imrescale``): (H, W, C) uint8 -> long side ``size``, cv2 bilinear."""
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("the 'cv2' resizer needs OpenCV: pip install 'ovsam[train]'") from e
    h, w = resized_size(image.shape[0], image.shape[1], size, "round")
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def normalize_and_pad(rgb: np.ndarray, size: int) -> torch.Tensor:
    """(h, w, 3) uint8 RGB -> (1, 3, size, size) float32, normalised then zero-padded."""
    x = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)
    mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(3, 1, 1)
    x = (x - mean) / std
    h, w = x.shape[1:]
    return F.pad(x, (0, size - w, 0, size - h), value=0.0)[None]


def upsample_masks(low_res: torch.Tensor, frame: FrameTransform) -> torch.Tensor:
    """Low-res mask logits (N, 1, s, s) over the padded frame -> logits at the original size.

    ``bilinear`` to the frame, crop the resized image area, ``bilinear`` to (H, W): the
    evaluation path of upstream. Returns (N, H, W) float logits.
    """
    x = F.interpolate(low_res, size=(frame.size, frame.size), mode="bilinear", align_corners=False)
    h, w = frame.resized_hw
    x = x[..., :h, :w]
    x = F.interpolate(x, size=frame.orig_hw, mode="bilinear", align_corners=False)
    return x[:, 0]
