"""Label bookkeeping shared by every host that paints objects into a label volume.

:class:`LabelBook` holds a label volume (numpy, zarr or :class:`~ovsam_core.hosts.labelvolume.ChunkedLabels`)
and one :class:`ObjectRecord` per object (class name, score, the model's suggestion, top-k,
box, plane, the prompt or grid point that produced it). :meth:`LabelBook.commit` paints masks
(:class:`~ovsam_core.hosts.planeprompts.Preview`) tile by tile with new ids as ONE undo step (one
clicked object, or every object of a pre-labelling run); :meth:`LabelBook.undo` gives the
pixels their previous values back. :func:`features_table` is the per-object table a viewer shows
(napari's Labels ``features``). Coordinates: plane pixels (row, col) of the volume's last two axes.
"""
from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .labelvolume import max_label, plane_bbox, write_block
from ..masks import mask_box
from .planeprompts import Preview

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
    """The pixels one commit changed in one tile, and their values before it."""

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
    """One undo step."""

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


#: makes the record of a painted preview: (preview, label id, painted area, box x0, y0, x1, y1)
MakeRecord = Callable[[Preview, int, int, Tuple[int, int, int, int]], ObjectRecord]


class LabelBook:
    """A label volume, its objects' records and the undo history (see the module doc).

    Args:
        labels: the volume (..., H, W); its largest id decides the next one.
    """

    def __init__(self, labels) -> None:
        self.labels = labels
        self.objects: Dict[int, ObjectRecord] = {}
        self._history: List[_Commit] = []
        self.next_id = max_label(labels) + 1
        self._lock = threading.RLock()

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    def _tiles(self, pv: Preview):
        for ty in range(pv.y0, pv.y1, TILE):
            for tx in range(pv.x0, pv.x1, TILE):
                yield ty, min(ty + TILE, pv.y1), tx, min(tx + TILE, pv.x1)

    def covered(self, pv: Preview) -> float:
        """Fraction of ``pv``'s mask that is labelled already."""
        hit = sum(int((pv.mask_tile(*t) & (plane_bbox(self.labels, pv.plane, t[0], t[1], t[2], t[3]) != 0)).sum())
                  for t in self._tiles(pv))
        return hit / max(pv.area, 1)

    def _paint(self, pv: Preview, lid: int, paint_over: bool) -> Tuple[List[_Part], int, Tuple[int, int, int, int]]:
        parts: List[_Part] = []
        area, box = 0, [math.inf, math.inf, -1, -1]          # y0, x0, y1, x1
        for ty, ty1, tx, tx1 in self._tiles(pv):
            m = pv.mask_tile(ty, ty1, tx, tx1)
            if not m.any():
                continue
            old = plane_bbox(self.labels, pv.plane, ty, ty1, tx, tx1)
            painted = m if paint_over else (m & (old == 0))
            if not painted.any():
                continue
            parts.append(_Part(ty, tx, painted.shape, np.packbits(painted), old[painted], lid, pv.plane))
            old[painted] = lid
            write_block(self.labels, pv.plane, ty, tx, old)
            area += int(painted.sum())
            c0, r0, c1, r1 = mask_box(painted)
            box = [min(box[0], ty + r0), min(box[1], tx + c0), max(box[2], ty + r1), max(box[3], tx + c1)]
        return parts, area, (int(box[1]), int(box[0]), int(box[3]), int(box[2])) if parts else (0, 0, 0, 0)

    def commit(self, previews: Sequence[Preview], make_record: MakeRecord, *, paint_over: bool = False,
               skip_covered: Optional[float] = None) -> List[ObjectRecord]:
        """Paint ``previews`` (in order, new ids) as ONE undo step; returns their records.

        Args:
            make_record: builds each object's record.
            paint_over: a mask replaces labelled pixels (else it fills unlabelled ones only).
            skip_covered: skip a preview whose mask is at least this fraction labelled already.
        """
        with self._lock:
            recs: List[ObjectRecord] = []
            parts: List[_Part] = []
            for pv in previews:
                if skip_covered is not None and self.covered(pv) >= skip_covered:
                    continue
                lid = self.next_id
                p, area, box = self._paint(pv, lid, paint_over)
                if not p:
                    continue
                rec = make_record(pv, lid, area, box)
                self.objects[lid] = rec
                recs.append(rec)
                parts += p
                self.next_id = lid + 1
            if recs:
                self._history.append(_Commit(recs, parts))
            return recs

    def undo(self) -> List[ObjectRecord]:
        """Undo the last commit: its pixels get their previous values back. Returns its records
        (empty: nothing to undo)."""
        with self._lock:
            if not self._history:
                return []
            c = self._history.pop()
            for part in reversed(c.parts):
                h, w = part.shape
                painted = part.painted_mask()
                cur = plane_bbox(self.labels, part.plane, part.y0, part.y0 + h, part.x0, part.x0 + w)
                restore = painted & (cur == part.label_id)
                vals = np.zeros_like(cur)
                vals[painted] = part.old
                cur[restore] = vals[restore]
                write_block(self.labels, part.plane, part.y0, part.x0, cur)
            for rec in c.records:
                self.objects.pop(rec.label_id, None)
            if c.records and c.records[-1].label_id == self.next_id - 1:
                self.next_id = c.records[0].label_id
            return list(c.records)

    def rename(self, label_id: int, class_name: str) -> ObjectRecord:
        """Change the class of an object (``choice`` says whether it is the suggestion, a top-k
        entry or typed)."""
        rec = self.objects[label_id]
        name = class_name.strip()
        if not name:
            raise ValueError("a class name cannot be empty")
        new = replace(rec, class_name=name, score=float(dict(rec.top_k).get(name, math.nan)),
                      choice=choice_of(name, rec.suggested_class, rec.top_k))
        self.objects[label_id] = new
        for c in self._history:
            c.records = [new if r.label_id == label_id else r for r in c.records]
        return new

    def features(self) -> Dict[str, np.ndarray]:
        """The per-object table (:func:`features_table`) of the objects, by id."""
        return features_table(self.objects.values())


def choice_of(name: str, suggested: str, top_k: Sequence[Tuple[str, float]]) -> str:
    """How a class was chosen: ``suggested``, ``top-k`` or ``typed``."""
    return "suggested" if name == suggested else ("top-k" if name in dict(top_k) else "typed")
