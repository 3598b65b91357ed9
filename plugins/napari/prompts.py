"""One object's prompt on one plane (napari data coordinates), read from the prompt layers.

Coordinates: napari data coordinates (row, col), a pixel's centre at integers. ovsam's prompts
use (x, y) with a pixel's centre at +0.5, so ``x = col + 0.5`` and ``y = row + 0.5``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ovsam_core import Region

POSITIVE, NEGATIVE = "positive", "negative"


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
        from ovsam_core import Prompt

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


def _label_value(v) -> int:
    if isinstance(v, str):
        return 0 if v.strip().lower() in (NEGATIVE, "neg", "0", "false") else 1
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    return 0 if v in (0, 0.0) else 1


def prompts_from_layers(points_layer, shapes_layer, plane: Sequence[int], label_column: str = "label") -> PromptSet:
    """The prompt of the current object from a Points layer (with a ``label`` feature,
    ``positive`` / ``negative``) and a Shapes layer (its last rectangle), on ``plane``.

    Both layers must share the image's data coordinates (same scale and translate). Shapes
    other than rectangles are ignored. Duck-typed: napari is not imported.
    """
    plane = tuple(int(p) for p in plane)
    n = len(plane)
    points: List[Tuple[float, float, int]] = []
    if points_layer is not None and len(points_layer.data):
        data = np.asarray(points_layer.data, dtype=float)
        feats = getattr(points_layer, "features", None)
        labels = list(feats[label_column]) if feats is not None and label_column in feats else [POSITIVE] * len(data)
        for row, lab in zip(data, labels):
            lead, (r, c) = row[:-2], row[-2:]
            if len(lead) >= n and tuple(int(round(v)) for v in lead[len(lead) - n:]) == plane:
                points.append((float(r), float(c), _label_value(lab)))
    box = None
    if shapes_layer is not None and len(shapes_layer.data):
        types = list(getattr(shapes_layer, "shape_type", ["rectangle"] * len(shapes_layer.data)))
        for verts, kind in zip(shapes_layer.data, types):
            if kind != "rectangle":
                continue
            v = np.asarray(verts, dtype=float)
            lead = v[0, :-2]
            if len(lead) >= n and tuple(int(round(x)) for x in lead[len(lead) - n:]) != plane:
                continue
            rows, cols = v[:, -2], v[:, -1]
            if rows.max() - rows.min() < 1e-6 or cols.max() - cols.min() < 1e-6:
                continue
            box = (float(rows.min()), float(cols.min()), float(rows.max()), float(cols.max()))
    return PromptSet(plane, tuple(points), box)
