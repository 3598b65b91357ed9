"""Prompts from what an annotator drew in a host: clicks and (rotated) boxes -> :class:`Prompt`.

Hosts store a box as its top-left corner, size and a rotation about that corner (degrees,
clockwise on screen, y down), and smart-tool clicks as points with a positive/negative flag.
The model takes axis-aligned boxes and points in original-image pixels.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np

from ..masks import mask_box
from ..prompts import Prompt

Box = Tuple[float, float, float, float]


def rotated_box_bounds(x: float, y: float, w: float, h: float, degrees: float = 0.0) -> Box:
    """Axis-aligned (x0, y0, x1, y1) bounds of a ``w`` x ``h`` box with top-left corner (x, y),
    rotated by ``degrees`` about that corner (any unit, e.g. pixels)."""
    if abs(degrees) < 1e-9:
        return (x, y, x + w, y + h)
    a = math.radians(degrees)
    ca, sa = math.cos(a), math.sin(a)
    xs = [x + dx * ca - dy * sa for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))]
    ys = [y + dx * sa + dy * ca for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))]
    return (min(xs), min(ys), max(xs), max(ys))


def clip_point(x: float, y: float, width: int, height: int) -> Tuple[float, float]:
    """(x, y) moved into the ``width`` x ``height`` image."""
    return (min(max(x, 0.0), float(width)), min(max(y, 0.0), float(height)))


def click_prompt(clicks: Sequence[Tuple[float, float, int]], box: Optional[Box] = None) -> Optional[Prompt]:
    """One prompt of an interactive session: all clicks ``(x, y, 1 positive | 0 negative)`` and
    the box; None while there is nothing to segment (no box and no positive click)."""
    if box is None and not any(lab == 1 for _, _, lab in clicks):
        return None
    p = Prompt.from_points(clicks) if clicks else Prompt()
    return Prompt(p.points, p.labels, box)


def mask_prompt(mask: np.ndarray) -> Optional[Prompt]:
    """The box prompt that re-finds a drawn (H, W) mask (its tight box); None when it is empty."""
    box = mask_box(mask)
    return None if box is None else Prompt.from_box(*(float(v) for v in box))

