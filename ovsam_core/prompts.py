"""Prompts in original-image pixels: points (positive/negative) and boxes.

Coordinates are ``x`` to the right, ``y`` down, in pixels of the original image (a pixel's
centre at +0.5). Upstream trained CLIP2SAM with positive points and boxes only: negative points
work (SAM's prompt encoder supports them) but were never seen in OVSAM training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Tuple


class PromptError(ValueError):
    """A prompt is invalid for the image; the message says what to change."""


@dataclass(frozen=True)
class Prompt:
    """One object to segment: points and/or a box.

    Attributes:
        points: ((x, y), ...) in original-image pixels.
        labels: one per point: 1 positive, 0 negative.
        box: (x0, y0, x1, y1) in original-image pixels, or None.
    """

    points: Tuple[Tuple[float, float], ...] = ()
    labels: Tuple[int, ...] = ()
    box: Optional[Tuple[float, float, float, float]] = None

    @classmethod
    def from_box(cls, x0: float, y0: float, x1: float, y1: float) -> "Prompt":
        return cls(box=(float(x0), float(y0), float(x1), float(y1)))

    @classmethod
    def from_points(cls, points: Iterable[Sequence[float]], labels: Optional[Iterable[int]] = None) -> "Prompt":
        """Points as (x, y) or (x, y, label) items; ``labels`` overrides (default positive)."""
        pts, labs = [], []
        for p in points:
            if len(p) not in (2, 3):
                raise PromptError(f"a point is (x, y) or (x, y, label), got {tuple(p)!r}")
            pts.append((float(p[0]), float(p[1])))
            labs.append(int(p[2]) if len(p) == 3 else 1)
        if labels is not None:
            labs = [int(v) for v in labels]
        return cls(points=tuple(pts), labels=tuple(labs))

    @property
    def kind(self) -> Tuple[int, bool]:
        """Batching group: (number of points, has a box)."""
        return (len(self.points), self.box is not None)

    def to_json(self) -> dict:
        d: dict = {}
        if self.points:
            d["points"] = [[x, y, lab] for (x, y), lab in zip(self.points, self.labels)]
        if self.box is not None:
            d["box"] = list(self.box)
        return d

    def validated(self, height: int, width: int) -> "Prompt":
        """Check against an image of (height, width); boxes are clipped to the image.

        Raises:
            PromptError: no point/box, labels not 0/1, non-finite values, a point outside the
                image, a box with x1 <= x0 or y1 <= y0, or a box entirely outside the image.
        """
        if not self.points and self.box is None:
            raise PromptError("empty prompt: give at least one point or a box")
        if len(self.labels) != len(self.points):
            raise PromptError(f"{len(self.points)} points but {len(self.labels)} labels")
        if any(lab not in (0, 1) for lab in self.labels):
            raise PromptError(f"point labels must be 1 (positive) or 0 (negative), got {list(self.labels)}")
        if self.points and self.box is None and 1 not in self.labels:
            raise PromptError("a prompt with only negative points has no object; add a positive point or a box")
        for x, y in self.points:
            if not (math.isfinite(x) and math.isfinite(y)):
                raise PromptError(f"point ({x}, {y}) is not a finite number")
            if not (0 <= x <= width and 0 <= y <= height):
                raise PromptError(f"point ({x:g}, {y:g}) is outside the {width}x{height} image")
        box = self.box
        if box is not None:
            if len(box) != 4 or not all(math.isfinite(v) for v in box):
                raise PromptError(f"box must be 4 finite numbers x0,y0,x1,y1, got {box}")
            x0, y0, x1, y1 = box
            if x1 <= x0 or y1 <= y0:
                raise PromptError(f"box {x0:g},{y0:g},{x1:g},{y1:g} is empty: need x0 < x1 and y0 < y1")
            if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
                raise PromptError(f"box {x0:g},{y0:g},{x1:g},{y1:g} is outside the {width}x{height} image")
            box = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
        return Prompt(self.points, self.labels, box)
