"""Few-shot learning from labelled regions: region descriptors, a SQLite prototype store, blending.

When an annotator labels an object (a box, polygon, brush stroke or click), a host stores a
*prototype*: the descriptor of that region under the project label it got.
At prediction time each region's descriptor is compared with the project's prototypes and the
similarity to each label's nearest prototype re-ranks the labels that have prototypes::

    s(label) = max_j cos(d - mu, proto_j - mu)          (j: the label's prototypes)
    p(label) = M * softmax(log p_text(label) + weight * s(label))   over labels with prototypes

where ``mu`` is the mean of the project's prototypes (centering removes what all regions of
the project share), ``M`` the text probability mass of the labels with prototypes (labels
without prototypes keep their text probability) and ``weight`` is
the caller's prototype weight (Label Studio: ``OVSAM_LS_PROTOTYPE_WEIGHT``, default 50;
:func:`blend_probabilities`). Nothing is trained: adding or deleting an annotation changes the
next prediction.

Descriptor: the image features of the model's two finest FPN levels, averaged over the region
(the human mask for polygons and brushes, the box for rectangles, the predicted mask for
keypoints and point prompts, the prompt box for box prompts), each L2-normalised, concatenated.

The store (:class:`PrototypeStore`) is one SQLite file (WAL mode, safe for several processes), keyed by project and model (descriptors of different models are not
comparable); each annotation's prototypes are replaced when it is updated.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS prototypes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    model_key TEXT NOT NULL,
    label TEXT NOT NULL,
    annotation_id TEXT,
    task_id TEXT,
    region_id TEXT,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS prototypes_project ON prototypes (project, model_key, label);
CREATE INDEX IF NOT EXISTS prototypes_annotation ON prototypes (project, annotation_id);
CREATE TABLE IF NOT EXISTS generations (project TEXT PRIMARY KEY, gen INTEGER NOT NULL);
"""


# ------------------------------------------------------------------------------------- descriptors
def region_descriptor(emb, mask: Optional[np.ndarray] = None,
                      box: Optional[Sequence[float]] = None) -> np.ndarray:
    """(D,) float32 descriptor of a region of an :class:`ovsam_core.ImageEmbedding`.

    Args:
        emb: the image's embedding (``features.fpn`` and ``frame`` are used).
        mask: (H, W) bool at the original resolution, or None to use ``box``.
        box: (x0, y0, x1, y1) original pixels (used when ``mask`` is None or empty).
    """
    import torch
    import torch.nn.functional as F
    from PIL import Image

    frame = emb.frame
    size = frame.size
    h, w = frame.resized_hw
    oh, ow = frame.orig_hw
    weight = np.zeros((size, size), np.float32)
    if mask is not None and mask.any():
        small = Image.fromarray(np.asarray(mask, np.uint8) * np.uint8(255)).resize((w, h), Image.Resampling.BOX)
        weight[:h, :w] = np.asarray(small, np.float32) / 255.0
    elif box is not None:
        sx, sy = w / ow, h / oh
        x0, y0, x1, y1 = box
        c0, r0 = int(np.floor(x0 * sx)), int(np.floor(y0 * sy))
        c1, r1 = max(c0 + 1, int(np.ceil(x1 * sx))), max(r0 + 1, int(np.ceil(y1 * sy)))
        weight[max(r0, 0):min(r1, h), max(c0, 0):min(c1, w)] = 1.0
    if weight.sum() <= 0:
        raise ValueError("empty region: no mask pixel and no box")
    parts = []
    wt = torch.from_numpy(weight)[None, None]
    with torch.inference_mode():
        for level in emb.features.fpn[:2]:
            f = level.float()
            g = tuple(f.shape[-2:])
            wl = F.adaptive_avg_pool2d(wt, g).to(f.device)
            pooled = (f * wl).sum(dim=(2, 3)) / wl.sum().clamp_min(1e-8)
            parts.append(F.normalize(pooled[0], dim=0).cpu())
    d = torch.cat(parts) / float(np.sqrt(len(parts)))
    return d.numpy().astype(np.float32)


# ------------------------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class PrototypeSet:
    """A project's prototypes for one model."""

    labels: Tuple[str, ...]
    vectors: np.ndarray  # (N, D) float32

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def counts(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for lab in self.labels:
            out[lab] = out.get(lab, 0) + 1
        return out

    def similarities(self, d: np.ndarray) -> Dict[str, float]:
        """Label -> centred cosine of ``d`` to the label's nearest prototype (needs >= 2 prototypes)."""
        if len(self.labels) < 2 or d.shape[-1] != self.vectors.shape[1]:
            return {}
        mu = self.vectors.mean(axis=0)
        p = self.vectors - mu
        p /= np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-8)
        q = d - mu
        n = float(np.linalg.norm(q))
        if n < 1e-8:
            return {}
        cos = p @ (q / n)
        out: Dict[str, float] = {}
        for lab, c in zip(self.labels, cos.tolist()):
            if c > out.get(lab, -2.0):
                out[lab] = c
        return out

#: floor of text probabilities before their log is taken
MIN_PROB = 1e-6


def blend_probabilities(p: np.ndarray, sims: Sequence[Optional[float]], weight: float) -> np.ndarray:
    """Label probabilities from text probabilities ``p`` (L,) and prototype similarities.

    Labels without prototypes (``None``) keep their text probability. The probability mass of
    the labels that have prototypes is redistributed among them by
    ``softmax(log p_text + weight * similarity)``; a label with prototypes but no text evidence
    starts from the uniform prior.
    """
    n = len(p)
    q = p / p.sum() if p.sum() > 0 else np.full(n, 1.0 / n)
    has = np.array([v is not None for v in sims])
    if has.any():
        q = np.where(has & (q <= 0), 1.0 / n, q)
        q = q / q.sum()
        mass = q[has].sum()
        s = np.array([v for v in sims if v is not None], np.float64)
        z = np.log(np.maximum(q[has], MIN_PROB)) + weight * s
        z = np.exp(z - z.max())
        q = q.copy()
        q[has] = mass * z / z.sum()
    return q


# ------------------------------------------------------------------------------------- store
class PrototypeStore:
    """SQLite-backed prototypes (see module docstring)."""

    def __init__(self, path, max_per_label: int = 100) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_per_label = max_per_label
        self._lock = threading.Lock()
        with self._conn() as c:
            c.executescript(SCHEMA)

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        c = sqlite3.connect(str(self.path), timeout=30)
        try:
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA busy_timeout=30000")
            with c:
                yield c
        finally:
            c.close()

    @staticmethod
    def _bump(c: sqlite3.Connection, project: str) -> None:
        c.execute("INSERT INTO generations (project, gen) VALUES (?, 1) "
                  "ON CONFLICT(project) DO UPDATE SET gen = gen + 1", (project,))

    def replace_annotation(self, project: str, model_key: str, annotation_id: str, task_id: Optional[str],
                           items: Sequence[Tuple[str, Optional[str], np.ndarray]]) -> int:
        """Replace the prototypes of one annotation by ``items`` (label, region id, vector)."""
        now = time.time()
        with self._lock, self._conn() as c:
            c.execute("DELETE FROM prototypes WHERE project = ? AND annotation_id = ?", (project, annotation_id))
            for label, region_id, vec in items:
                v = np.asarray(vec, np.float32)
                c.execute("INSERT INTO prototypes (project, model_key, label, annotation_id, task_id, region_id, "
                          "dim, vector, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (project, model_key, label, annotation_id, task_id, region_id, int(v.shape[0]),
                           v.tobytes(), now))
            for label in {lab for lab, _, _ in items}:
                c.execute("DELETE FROM prototypes WHERE id IN (SELECT id FROM prototypes WHERE project = ? AND "
                          "model_key = ? AND label = ? ORDER BY created DESC, id DESC LIMIT -1 OFFSET ?)",
                          (project, model_key, label, self.max_per_label))
            self._bump(c, project)
        return len(items)

    def delete_annotation(self, project: str, annotation_id: str) -> int:
        with self._lock, self._conn() as c:
            n = c.execute("DELETE FROM prototypes WHERE project = ? AND annotation_id = ?",
                          (project, annotation_id)).rowcount
            self._bump(c, project)
        return n

    def delete_project(self, project: str) -> int:
        with self._lock, self._conn() as c:
            n = c.execute("DELETE FROM prototypes WHERE project = ?", (project,)).rowcount
            self._bump(c, project)
        return n

    def generation(self, project: str) -> int:
        with self._conn() as c:
            row = c.execute("SELECT gen FROM generations WHERE project = ?", (project,)).fetchone()
        return int(row[0]) if row else 0

    def load(self, project: str, model_key: str) -> PrototypeSet:
        with self._conn() as c:
            rows = c.execute("SELECT label, dim, vector FROM prototypes WHERE project = ? AND model_key = ? "
                             "ORDER BY id", (project, model_key)).fetchall()
        if not rows:
            return PrototypeSet((), np.zeros((0, 0), np.float32))
        dim = rows[-1][1]
        rows = [r for r in rows if r[1] == dim]
        vecs = np.stack([np.frombuffer(r[2], np.float32) for r in rows])
        return PrototypeSet(tuple(r[0] for r in rows), vecs)

    def counts(self, project: Optional[str] = None) -> Dict[str, int]:
        with self._conn() as c:
            if project is None:
                rows = c.execute("SELECT project, COUNT(*) FROM prototypes GROUP BY project").fetchall()
            else:
                rows = c.execute("SELECT label, COUNT(*) FROM prototypes WHERE project = ? GROUP BY label",
                                 (project,)).fetchall()
        return {str(k): int(v) for k, v in rows}
