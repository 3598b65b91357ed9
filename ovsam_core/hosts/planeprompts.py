"""One object's prompt on one plane of an n-D image, and the mask it gives (:class:`Preview`).

Coordinates: a viewer's data coordinates (row, col; napari's), a pixel's centre at integers.
ovsam's prompts use (x, y) with a pixel's centre at +0.5, so ``x = col + 0.5`` and
``y = row + 0.5``. Masks are held at the resolution their region was read at
(:class:`~ovsam_core.hosts.tiling.Region`), cropped to their box, and only upsampled tile by tile.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .tiling import Region


@dataclass(frozen=True)
class PromptSet:
    """One object's prompt on one plane, in napari data coordinates.

    Attributes:
        plane: indices of the leading (non-spatial) axes, ``()`` for 2-D images.
        points: ((row, col, label), ...), label 1 positive, 0 negative.
        box: (row0, col0, row1, col1) or None.
    """

    plane: Tuple[int, ...] = ()
    points: Tuple[Tuple[float, float, int], ...] = ()
    box: Optional[Tuple[float, float, float, float]] = None

    def is_empty(self) -> bool:
        return not self.points and self.box is None

    def extent(self) -> Tuple[float, float, float, float]:
        """(y0, x0, y1, x1) in ovsam pixel coordinates (edges)."""
        ys = [r + 0.5 for r, _, _ in self.points]
        xs = [c + 0.5 for _, c, _ in self.points]
        if self.box is not None:
            r0, c0, r1, c1 = self.box
            ys += [min(r0, r1) + 0.5, max(r0, r1) + 0.5]
            xs += [min(c0, c1) + 0.5, max(c0, c1) + 0.5]
        return (min(ys), min(xs), max(ys), max(xs))

    def to_prompt(self, region: Region):
        """The :class:`ovsam_core.Prompt` in the pixels of the region as read."""
        from ..prompts import Prompt

        s = float(region.step)
        pts = tuple(((c + 0.5 - region.x0) / s, (r + 0.5 - region.y0) / s) for r, c, _ in self.points)
        labels = tuple(int(lab) for _, _, lab in self.points)
        box = None
        if self.box is not None:
            r0, c0, r1, c1 = self.box
            box = ((min(c0, c1) + 0.5 - region.x0) / s, (min(r0, r1) + 0.5 - region.y0) / s,
                   (max(c0, c1) + 0.5 - region.x0) / s, (max(r0, r1) + 0.5 - region.y0) / s)
        return Prompt(pts, labels, box)

    def to_json(self) -> Dict[str, Any]:
        """Prompt in ovsam pixel coordinates of the plane (x, y; +0.5 convention)."""
        d: Dict[str, Any] = {}
        if self.points:
            d["points"] = [[c + 0.5, r + 0.5, int(lab)] for r, c, lab in self.points]
        if self.box is not None:
            r0, c0, r1, c1 = self.box
            d["box"] = [min(c0, c1) + 0.5, min(r0, r1) + 0.5, max(c0, c1) + 0.5, max(r0, r1) + 0.5]
        return d


@dataclass(frozen=True)
class Preview:
    """The current (uncommitted) object.

    ``mask`` is at the resolution the region was read at (one pixel = ``step`` x ``step`` plane
    pixels), cropped to its bounding box, whose top-left plane pixel is (``y0``, ``x0``). It is
    never upsampled as a whole: :meth:`mask_tile` gives plane-resolution tiles on demand.
    """

    prompts: PromptSet
    region: Region
    mask: np.ndarray = field(repr=False)
    y0: int
    x0: int
    label: str
    score: float
    top_k: Tuple[Tuple[str, float], ...]
    label_path: Tuple[str, ...] = ()
    quality: Dict[str, float] = field(default_factory=dict)
    source: str = "prompt"          # "prompt", or the pre-labelling mode ("everything" / "find")

    @property
    def plane(self) -> Tuple[int, ...]:
        return self.prompts.plane

    @property
    def step(self) -> int:
        return self.region.step

    @property
    def y1(self) -> int:
        return min(self.y0 + self.mask.shape[0] * self.step, self.region.y1)

    @property
    def x1(self) -> int:
        return min(self.x0 + self.mask.shape[1] * self.step, self.region.x1)

    @property
    def area(self) -> int:
        """Mask pixels at plane resolution."""
        if self.step == 1:
            return int(self.mask.sum())
        h, w = self.mask.shape
        wy = np.minimum(self.step, self.y1 - (self.y0 + self.step * np.arange(h)))
        wx = np.minimum(self.step, self.x1 - (self.x0 + self.step * np.arange(w)))
        return int(wy @ self.mask.astype(np.int64) @ wx)

    @property
    def bbox_xyxy(self) -> Tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)

    def mask_tile(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The mask at plane resolution on [y0, y1) x [x0, x1) (zeros outside the object's box)."""
        out = np.zeros((y1 - y0, x1 - x0), bool)
        iy0, iy1 = max(y0, self.y0), min(y1, self.y1)
        ix0, ix1 = max(x0, self.x0), min(x1, self.x1)
        if iy1 <= iy0 or ix1 <= ix0:
            return out
        rows = (np.arange(iy0, iy1) - self.y0) // self.step
        cols = (np.arange(ix0, ix1) - self.x0) // self.step
        out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = self.mask[rows[:, None], cols[None, :]]
        return out

    def summary(self) -> str:
        alts = ", ".join(f"{n} {s:.2f}" for n, s in self.top_k[1:])
        return f"{self.label} ({self.score:.2f})" + (f"; also {alts}" if alts else "")
