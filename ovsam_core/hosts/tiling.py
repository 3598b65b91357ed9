"""Regions of interest of large images: which window to embed for a prompt, read at which stride.

An image too large to embed whole (more than ``whole_max`` pixels a side) is answered from a
**region of interest** around the prompt: a square of ``roi_size`` pixels around points, or the
prompt's extent plus 25 % context on each side. A region stays in use while new prompts fall
inside it (away from its border), so one embedding serves many clicks. A region larger than
``max_read`` pixels a side is read every ``step`` pixels, from the coarsest pyramid level that is
not coarser than that step (``level``, read with ``level_stride``), so reading never costs more
than ``max_read`` squared pixels (up to twice that a side from a pyramid level).

Coordinates: level-0 pixels, ``[y0, y1) x [x0, x1)``; ``plane`` holds the indices of leading
(non-spatial) axes of an n-D image, ``()`` for 2-D.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple


@dataclass(frozen=True)
class Region:
    """Part of one plane, in level-0 pixels [y0, y1) x [x0, x1), read every ``step`` pixels
    (from pyramid ``level`` with ``level_stride``)."""

    plane: Tuple[int, ...]
    y0: int
    y1: int
    x0: int
    x1: int
    step: int = 1
    level: int = 0
    level_stride: int = 1

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    def contains(self, y0: float, x0: float, y1: float, x1: float, margin: float = 0.0) -> bool:
        return (y0 >= self.y0 + margin and x0 >= self.x0 + margin
                and y1 <= self.y1 - margin and x1 <= self.x1 - margin)


def plan_region(plane: Sequence[int], height: int, width: int, extent: Tuple[float, float, float, float], *,
                whole: bool, roi_size: int = 1024, max_read: int = 2048, level_factors: Sequence[int] = (1,),
                cached: Optional[Region] = None) -> Region:
    """The region to embed for a prompt of ``extent`` ``(y0, x0, y1, x1)`` (pixel edges).

    Args:
        plane: leading-axis indices of the plane.
        height / width: the plane's size (level-0 pixels).
        whole: embed the whole plane (else a region of interest around the extent).
        roi_size: side of the region around small prompts (points).
        max_read: largest side read; larger regions are read with a stride.
        level_factors: integer downsampling factor of each pyramid level (0 = unusable).
        cached: the region in use; returned unchanged while the prompt lies well inside it.
    """
    plane = tuple(int(p) for p in plane)
    if whole:
        y0, y1, x0, x1 = 0, height, 0, width
    else:
        ey0, ex0, ey1, ex1 = extent
        side = int(max(roi_size, math.ceil(max(ey1 - ey0, ex1 - ex0) * 1.5)))
        margin = min(64.0, 0.1 * side)
        if (cached is not None and cached.plane == plane and max(cached.height, cached.width) <= 2 * side
                and cached.contains(ey0, ex0, ey1, ex1, margin=min(margin, 0.1 * min(cached.height, cached.width)))):
            return cached
        cy, cx = (ey0 + ey1) / 2, (ex0 + ex1) / 2
        y0 = int(min(max(0, round(cy - side / 2)), max(0, height - side)))
        x0 = int(min(max(0, round(cx - side / 2)), max(0, width - side)))
        y1, x1 = min(height, y0 + side), min(width, x0 + side)
    want = max(1, math.ceil(max(y1 - y0, x1 - x0) / max_read))
    level, f = 0, 1
    if want > 1:  # the coarsest pyramid level that is not coarser than the stride we want
        for i, fi in enumerate(level_factors):
            if fi and f < fi <= want:
                level, f = i, fi
    stride = want // f
    step = f * stride
    y0, x0 = (y0 // step) * step, (x0 // step) * step
    return Region(plane, y0, y1, x0, x1, step, level, stride)
