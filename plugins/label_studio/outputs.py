"""Masks -> Label Studio result regions: brush RLE, polygons, rectangles (percent coordinates).

* Brush: Label Studio's own RLE (``label_studio_sdk.converter.brush.mask2rle`` of the 0/255
  mask; it is not COCO RLE).
* Polygons: the outer boundary of each sizeable 8-connected component of the mask, traced along
  pixel edges (so that the polygon covers exactly the component's pixels, holes aside), then
  simplified (Douglas-Peucker, 1 px by default, at most ``max_points`` vertices). One polygon
  region per component, largest first. These export to COCO.
* Rectangles: the tight box of the mask.
"""
from __future__ import annotations

import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

Polygon = List[Tuple[float, float]]


def new_id() -> str:
    return uuid.uuid4().hex[:10]


# ------------------------------------------------------------------------------------- brush
def mask_to_brush_rle(mask: np.ndarray) -> List[int]:
    """(H, W) bool -> Label Studio brush RLE."""
    from label_studio_sdk.converter.brush import mask2rle

    return [int(v) for v in mask2rle(np.ascontiguousarray(mask, dtype=np.uint8) * np.uint8(255))]


def brush_rle_to_mask(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """Inverse of :func:`mask_to_brush_rle` (alpha channel > 0)."""
    from label_studio_sdk.converter.brush import decode_rle

    return np.asarray(decode_rle(list(rle)), np.uint8).reshape(height, width, 4)[:, :, 3] > 0


# ------------------------------------------------------------------------------------- components
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


# ------------------------------------------------------------------------------------- tracing
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


def mask_polygons(mask: np.ndarray, *, tol: float = 1.0, max_points: int = 200, max_polygons: int = 10,
                  min_fraction: float = 0.05, min_area: int = 4) -> List[Polygon]:
    """Polygons (pixel-edge coordinates) of the sizeable components of a mask, largest first.

    A component is kept when its area is at least ``min_area`` pixels and ``min_fraction`` of
    the largest component's.
    """
    mask = np.asarray(mask, bool)
    comps = components(mask)
    if not comps:
        return []
    ys, starts, ends = _runs(mask)
    largest = comps[0][0]
    out = []
    for area, idx in comps[:max_polygons]:
        if area < min_area or area < min_fraction * largest:
            break
        ry, rs, re_ = ys[idx], starts[idx], ends[idx]
        y0, x0 = int(ry.min()), int(rs.min())
        crop = np.zeros((int(ry.max()) - y0 + 3, int(re_.max()) - x0 + 3), bool)
        for y, s, e in zip(ry, rs, re_):
            crop[y - y0 + 1, s - x0 + 1:e - x0 + 1] = True
        poly = _trace_outer(crop)
        poly = [(px + x0 - 1, py + y0 - 1) for px, py in poly]
        if len(poly) >= 3:
            out.append(simplify(poly, tol, max_points))
    return out


def mask_box(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return None
    return (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)


# ------------------------------------------------------------------------------------- regions
def _pct(v: float, total: int) -> float:
    return round(100.0 * float(v) / float(total), 4)


def region(control, value: Dict[str, Any], label: str, width: int, height: int, score: float,
           meta: Optional[Dict[str, Any]] = None, region_id: Optional[str] = None) -> Dict[str, Any]:
    """A result region for ``control`` with its label list filled."""
    value = dict(value)
    value[control.result_type] = [label]
    out: Dict[str, Any] = {
        "id": region_id or new_id(),
        "from_name": control.name,
        "to_name": control.to_name,
        "type": control.result_type,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": value,
        "score": round(float(score), 6),
        "readonly": False,
    }
    if meta:
        out["meta"] = meta
    return out


def brush_value(mask: np.ndarray) -> Dict[str, Any]:
    return {"format": "rle", "rle": mask_to_brush_rle(mask)}


def polygon_values(mask: np.ndarray, width: int, height: int, **kw) -> List[Dict[str, Any]]:
    return [{"points": [[_pct(x, width), _pct(y, height)] for x, y in poly], "closed": True}
            for poly in mask_polygons(mask, **kw)]


def rectangle_value(box: Tuple[float, float, float, float], width: int, height: int) -> Dict[str, Any]:
    x0, y0, x1, y1 = box
    return {"x": _pct(x0, width), "y": _pct(y0, height), "width": _pct(x1 - x0, width),
            "height": _pct(y1 - y0, height), "rotation": 0}
