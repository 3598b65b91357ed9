"""Results of the napari controller: the current preview and the committed objects' records."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Tuple

import numpy as np

from ovsam_core import Region

from .prompts import PromptSet


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


@dataclass(frozen=True)
class ObjectRecord:
    """One committed object: a row of the Labels layer's ``features``."""

    label_id: int
    class_name: str
    score: float
    suggested_class: str
    suggested_score: float
    choice: str                     # "suggested", "top-k" or "typed"
    top_k: Tuple[Tuple[str, float], ...]
    area: int
    bbox_xyxy: Tuple[int, int, int, int]
    plane: Tuple[int, ...]
    prompt: Dict[str, Any] = field(default_factory=dict)


@dataclass
class _Part:
    y0: int
    x0: int
    shape: Tuple[int, int]
    painted: np.ndarray             # np.packbits of the bool tile of pixels set to the label
    old: np.ndarray                 # their values before the commit (1-D)
    label_id: int = 0
    plane: Tuple[int, ...] = ()

    def painted_mask(self) -> np.ndarray:
        n = self.shape[0] * self.shape[1]
        return np.unpackbits(self.painted, count=n).astype(bool).reshape(self.shape)


@dataclass
class _Commit:
    records: List[ObjectRecord]     # one object, or all objects of one pre-labelling run
    parts: List[_Part]


#: Commits, undo and export touch the labels in tiles of this side (bounded memory).
TILE = 1024


FEATURE_COLUMNS = ("index", "class_name", "score", "suggested_class", "suggested_score", "choice",
                   "top_k", "area", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "plane", "point_x", "point_y")


def _first_point(rec: ObjectRecord) -> Tuple[float, float]:
    """(x, y) plane pixels of the record's first point (the grid point of a pre-labelled
    object), NaN for a box-only prompt."""
    pts = rec.prompt.get("points") or [[np.nan, np.nan]]
    return float(pts[0][0]), float(pts[0][1])


def features_table(records: Iterable[ObjectRecord]) -> Dict[str, np.ndarray]:
    """The Labels layer's ``features`` table: one row per object, keyed by ``index``."""
    recs = list(records)
    return {
        "index": np.array([r.label_id for r in recs], dtype=np.int64),
        "class_name": np.array([r.class_name for r in recs], dtype=object),
        "score": np.array([r.score for r in recs], dtype=float),
        "suggested_class": np.array([r.suggested_class for r in recs], dtype=object),
        "suggested_score": np.array([r.suggested_score for r in recs], dtype=float),
        "choice": np.array([r.choice for r in recs], dtype=object),
        "top_k": np.array([json.dumps([[n, round(s, 6)] for n, s in r.top_k]) for r in recs], dtype=object),
        "area": np.array([r.area for r in recs], dtype=np.int64),
        "bbox_x0": np.array([r.bbox_xyxy[0] for r in recs], dtype=np.int64),
        "bbox_y0": np.array([r.bbox_xyxy[1] for r in recs], dtype=np.int64),
        "bbox_x1": np.array([r.bbox_xyxy[2] for r in recs], dtype=np.int64),
        "bbox_y1": np.array([r.bbox_xyxy[3] for r in recs], dtype=np.int64),
        "plane": np.array([",".join(map(str, r.plane)) for r in recs], dtype=object),
        "point_x": np.array([_first_point(r)[0] for r in recs], dtype=float),
        "point_y": np.array([_first_point(r)[1] for r in recs], dtype=float),
    }
