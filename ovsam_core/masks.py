"""Mask geometry every host needs: boxes, crops, connected parts, polygons, COCO RLE of crops, IoU.

Coordinates: a mask is an (H, W) bool array indexed ``[row, col]``; boxes are ``(x0, y0, x1,
y1)`` pixels with exclusive end (a pixel's top-left corner at integers); polygons are lists of
``(x, y)`` vertices on pixel **edges**, so a polygon traced from a mask rasterises back
(:func:`polygon_to_mask`, pixel centres inside) to exactly the pixels it was traced from.

Connectivity is 8-neighbour (diagonal pixels touch), as in COCO's polygon exports. COCO RLE is
pycocotools' compressed string form (:func:`crop_to_rle` writes it from a crop without
allocating the full-size mask).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

Polygon = List[Tuple[float, float]]
Box = Tuple[int, int, int, int]


def mask_box(mask: np.ndarray) -> Optional[Box]:
    """Tight ``(x0, y0, x1, y1)`` box (exclusive end) of an (H, W) mask; None when it is empty."""
    m = np.asarray(mask, bool)
    ys = np.flatnonzero(m.any(axis=1))
    xs = np.flatnonzero(m.any(axis=0))
    if len(xs) == 0:
        return None
    return (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)


def tight_crop(mask: np.ndarray) -> Tuple[np.ndarray, int, int]:
    """(crop, y0, x0): the mask cut to its tight box; an empty mask gives a (0, 0) crop at (0, 0)."""
    box = mask_box(mask)
    if box is None:
        return np.zeros((0, 0), bool), 0, 0
    x0, y0, x1, y1 = box
    return np.ascontiguousarray(np.asarray(mask, bool)[y0:y1, x0:x1]), y0, x0


def _runs(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of foreground: (row, start, end-exclusive), in raster order."""
    m = np.ascontiguousarray(mask, dtype=np.int8)
    h, w = m.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = m
    d = np.diff(padded, axis=1)
    ys, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)
    return ys, starts, ends


def components(mask: np.ndarray) -> List[Tuple[int, np.ndarray]]:
    """8-connected components as (area, run indices), largest first.

    Runs of consecutive rows join when their column ranges touch diagonally or overlap.
    """
    ys, starts, ends = _runs(mask)
    n = len(ys)
    if n == 0:
        return []
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    row_bounds = np.searchsorted(ys, np.arange(int(ys[-1]) + 2))
    for y in range(int(ys[0]) + 1, int(ys[-1]) + 1):
        a0, a1 = row_bounds[y - 1], row_bounds[y]
        b0, b1 = row_bounds[y], row_bounds[y + 1]
        i, j = a0, b0
        while i < a1 and j < b1:
            # [s, e) ranges touch in 8-connectivity when s_a <= e_b and s_b <= e_a
            if starts[i] <= ends[j] and starts[j] <= ends[i]:
                ra, rb = find(i), find(j)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
            if ends[i] < ends[j]:
                i += 1
            else:
                j += 1
    roots = np.array([find(i) for i in range(n)])
    lengths = ends - starts
    out = []
    for r in np.unique(roots):
        idx = np.nonzero(roots == r)[0]
        out.append((int(lengths[idx].sum()), idx))
    out.sort(key=lambda t: (-t[0], int(t[1][0])))
    return out


_DIRS = ((1, 0), (0, 1), (-1, 0), (0, -1))  # E, S, W, N: clockwise on screen (y down)


def _trace_outer(m: np.ndarray) -> Polygon:
    """Outer boundary (pixel-corner vertices, clockwise on screen) of the component that holds the
    first foreground pixel of ``m`` in raster order; ``m`` has a background border."""
    w = m.shape[1]
    first = int(np.argmax(m.ravel()))
    y0, x0 = divmod(first, w)
    x, y, d = x0, y0, 0
    verts: Polygon = [(x, y)]
    steps, limit = 0, 4 * m.size + 8
    while True:
        dx, dy = _DIRS[d]
        rx, ry = -dy, dx  # right-hand normal
        # pixels just ahead, left and right of the edge: centre v + d/2 -/+ r/2
        lx, ly = int(np.floor(x + 0.5 * dx - 0.5 * rx)), int(np.floor(y + 0.5 * dy - 0.5 * ry))
        qx, qy = int(np.floor(x + 0.5 * dx + 0.5 * rx)), int(np.floor(y + 0.5 * dy + 0.5 * ry))
        if m[ly, lx]:
            nd = (d + 3) % 4  # left (diagonal neighbours are connected)
        elif m[qy, qx]:
            nd = d
        else:
            nd = (d + 1) % 4
        if steps and (x, y) == (x0, y0) and nd == 0:
            break
        if nd != d:
            if verts[-1] != (x, y):
                verts.append((x, y))
            d = nd
        x += _DIRS[d][0]
        y += _DIRS[d][1]
        steps += 1
        if steps > limit:  # pragma: no cover - defensive
            break
    return [(float(a), float(b)) for a, b in verts]


def _dp(points: np.ndarray, tol: float) -> np.ndarray:
    """Douglas-Peucker keep-mask of an open polyline."""
    n = len(points)
    keep = np.zeros(n, bool)
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        a, b = stack.pop()
        if b <= a + 1:
            continue
        p, q = points[a], points[b]
        seg = points[a + 1:b]
        d = q - p
        norm = float(np.hypot(*d))
        if norm == 0:
            dist = np.hypot(*(seg - p).T)
        else:
            dist = np.abs(d[0] * (seg[:, 1] - p[1]) - d[1] * (seg[:, 0] - p[0])) / norm
        k = int(np.argmax(dist))
        if dist[k] > tol:
            m = a + 1 + k
            keep[m] = True
            stack.append((a, m))
            stack.append((m, b))
    return keep


def simplify(poly: Polygon, tol: float = 1.0, max_points: int = 200) -> Polygon:
    """Closed-polygon Douglas-Peucker; raises ``tol`` until at most ``max_points`` vertices remain."""
    pts = np.asarray(poly, np.float64)
    if len(pts) <= 4:
        return [tuple(p) for p in pts.tolist()]
    far = int(np.argmax(np.hypot(*(pts - pts[0]).T)))
    while True:
        a = np.vstack([pts[:far + 1]])
        b = np.vstack([pts[far:], pts[:1]])
        ka, kb = _dp(a, tol), _dp(b, tol)
        out = np.vstack([a[ka], b[kb][1:-1]])
        if len(out) <= max_points or tol > 1e6:
            return [tuple(p) for p in out.tolist()]
        tol *= 1.5


@dataclass(frozen=True)
class MaskPolygons:
    """The polygons of a mask's parts and how much of the mask they cover.

    Attributes:
        polygons: one outer boundary per kept part, largest part first (holes are not cut out).
        parts: number of 8-connected parts of the mask.
        mask_area: pixels of the mask; covered_area: pixels of the kept parts.
    """

    polygons: Tuple[Polygon, ...]
    parts: int
    mask_area: int
    covered_area: int

    @property
    def coverage(self) -> float:
        """Share of the mask's pixels inside the kept parts (1.0 for an empty mask)."""
        return self.covered_area / self.mask_area if self.mask_area else 1.0

    @property
    def dropped_parts(self) -> int:
        return self.parts - len(self.polygons)

    def describe(self) -> str:
        """One line for logs and region metadata, e.g. ``"12 of 40 parts, 97.5% of the mask"``."""
        return f"{len(self.polygons)} of {self.parts} parts, {100 * self.coverage:.1f}% of the mask"


def mask_to_polygons(mask: np.ndarray, *, tolerance: float = 1.0, max_points: int = 200, min_area: int = 4,
                     max_polygons: int = 100) -> MaskPolygons:
    """Polygons (pixel-edge vertices) of the parts of a mask, largest first.

    Every part of at least ``min_area`` pixels is kept, up to ``max_polygons`` parts; each
    boundary is simplified (Douglas-Peucker, ``tolerance`` px, at most ``max_points`` vertices).
    What was left out is in the result (:attr:`MaskPolygons.coverage`), never silent.
    """
    m = np.asarray(mask, bool)
    comps = components(m)
    area = int(sum(a for a, _ in comps))
    if not comps:
        return MaskPolygons((), 0, 0, 0)
    ys, starts, ends = _runs(m)
    out: List[Polygon] = []
    covered = 0
    for part_area, idx in comps[:max_polygons]:
        if part_area < min_area:
            break
        ry, rs, re_ = ys[idx], starts[idx], ends[idx]
        y0, x0 = int(ry.min()), int(rs.min())
        crop = np.zeros((int(ry.max()) - y0 + 3, int(re_.max()) - x0 + 3), bool)
        for y, s, e in zip(ry, rs, re_):
            crop[y - y0 + 1, s - x0 + 1:e - x0 + 1] = True
        poly = [(px + x0 - 1, py + y0 - 1) for px, py in _trace_outer(crop)]
        if len(poly) >= 3:
            out.append(simplify(poly, tolerance, max_points))
            covered += part_area
    return MaskPolygons(tuple(out), len(comps), area, covered)


def polygon_to_mask(points: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """(H, W) bool of a polygon of ``(x, y)`` pixel vertices: pixels whose centre is inside
    (even-odd rule). Raises ValueError for fewer than 3 vertices."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) < 3:
        raise ValueError("a polygon needs at least 3 points")
    mask = np.zeros((height, width), bool)
    x, y = pts[:, 0], pts[:, 1]
    x2, y2 = np.roll(x, -1), np.roll(y, -1)
    r0 = max(int(np.floor(y.min() - 0.5)), 0)
    r1 = min(int(np.ceil(y.max() + 0.5)), height)
    for r in range(r0, r1):
        yc = r + 0.5
        sel = ((y <= yc) & (y2 > yc)) | ((y2 <= yc) & (y > yc))
        if not sel.any():
            continue
        xs = np.sort(x[sel] + (yc - y[sel]) * (x2[sel] - x[sel]) / (y2[sel] - y[sel]))
        for a, b in zip(xs[0::2], xs[1::2]):
            c0 = max(int(np.ceil(a - 0.5)), 0)
            c1 = min(int(np.ceil(b - 0.5)), width)
            if c1 > c0:
                mask[r, c0:c1] = True
    return mask


def crop_iou(a: np.ndarray, a_yx: Tuple[int, int], b: np.ndarray, b_yx: Tuple[int, int]) -> float:
    """Pixel IoU of two masks given as crops placed at (y0, x0) of one image (0.0 when both are empty)."""
    (ay, ax), (by, bx) = a_yx, b_yx
    y0, x0 = min(ay, by), min(ax, bx)
    y1, x1 = max(ay + a.shape[0], by + b.shape[0]), max(ax + a.shape[1], bx + b.shape[1])
    ca, cb = np.zeros((y1 - y0, x1 - x0), bool), np.zeros((y1 - y0, x1 - x0), bool)
    ca[ay - y0:ay - y0 + a.shape[0], ax - x0:ax - x0 + a.shape[1]] = a
    cb[by - y0:by - y0 + b.shape[0], bx - x0:bx - x0 + b.shape[1]] = b
    union = int((ca | cb).sum())
    return int((ca & cb).sum()) / union if union else 0.0


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to (height, width) (e.g. a stored crop to its box)."""
    m = np.asarray(mask, bool)
    if m.shape == (height, width):
        return m
    ri = (np.arange(height) * m.shape[0] // max(height, 1)).clip(0, m.shape[0] - 1)
    ci = (np.arange(width) * m.shape[1] // max(width, 1)).clip(0, m.shape[1] - 1)
    return m[ri][:, ci]


def crop_to_rle(crop: np.ndarray, y0: int, x0: int, height: int, width: int) -> Dict[str, Any]:
    """COCO compressed RLE of a (height, width) mask that is zero outside ``crop`` at (y0, x0).

    Equal to ``pycocotools.mask.encode`` of the full-size mask, without allocating it; the crop
    is walked in strips of columns (COCO runs go down the columns).
    """
    from pycocotools import mask as mask_utils

    m = np.asarray(crop, dtype=bool)
    H, W = int(height), int(width)
    total = H * W
    h, w = m.shape
    starts_l, ends_l = [], []
    strip = max(1, (1 << 22) // max(h, 1))
    for c0 in range(0, w, strip):
        part = m[:, c0:c0 + strip]
        d = np.diff(part.view(np.int8), axis=0, prepend=np.int8(0), append=np.int8(0)).T  # (cols, h+1)
        cs, rs = np.nonzero(d == 1)
        ce, re_ = np.nonzero(d == -1)
        starts_l.append((x0 + c0 + cs).astype(np.int64) * H + y0 + rs)
        ends_l.append((x0 + c0 + ce).astype(np.int64) * H + y0 + re_)
    starts = np.concatenate(starts_l) if starts_l else np.zeros(0, np.int64)
    ends = np.concatenate(ends_l) if ends_l else np.zeros(0, np.int64)
    if not len(starts):
        counts = [total]
    else:
        joined = ends[:-1] == starts[1:]          # runs continuing into the next column
        starts = starts[np.r_[True, ~joined]]
        ends = ends[np.r_[~joined, True]]
        c = np.empty(2 * len(starts) + 1, np.int64)
        c[0] = starts[0]
        c[1::2] = ends - starts
        c[2:-1:2] = starts[1:] - ends[:-1]
        c[-1] = total - ends[-1]
        counts = c[:-1].tolist() if c[-1] == 0 else c.tolist()  # as pycocotools: no trailing empty run
    rle = mask_utils.frPyObjects({"size": [H, W], "counts": counts}, H, W)
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}
