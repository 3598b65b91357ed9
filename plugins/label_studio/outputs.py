"""Masks -> Label Studio result regions: brush RLE, polygons, rectangles (percent coordinates).

* Brush: Label Studio's own RLE (``label_studio_sdk.converter.brush.mask2rle`` of the 0/255
  mask; it is not COCO RLE).
* Polygons: :func:`ovsam_core.mask_to_polygons`: the outer boundary of each 8-connected part of
  the mask (parts of at least 4 px, up to 100), traced along pixel edges and simplified; one
  polygon region per part, largest first. These export to COCO. What is left out is reported.
* Rectangles: the tight box of the mask.
"""
from __future__ import annotations

import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ovsam_core import MaskPolygons, mask_to_polygons


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


def polygon_values(mask: np.ndarray, width: int, height: int, **kw) -> Tuple[List[Dict[str, Any]], MaskPolygons]:
    """Polygon values (percent) of a mask's parts, and what they cover (``kw``: see ``mask_to_polygons``)."""
    res = mask_to_polygons(mask, **kw)
    return [{"points": [[_pct(x, width), _pct(y, height)] for x, y in poly], "closed": True}
            for poly in res.polygons], res


def rectangle_value(box: Tuple[float, float, float, float], width: int, height: int) -> Dict[str, Any]:
    x0, y0, x1, y1 = box
    return {"x": _pct(x0, width), "y": _pct(y0, height), "width": _pct(x1 - x0, width),
            "height": _pct(y1 - y0, height), "rotation": 0}


def object_regions(control, mask: np.ndarray, box, label: str, width: int, height: int, score: float,
                   meta: Dict[str, Any]) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """The regions of one object (``mask`` (H, W) bool, ``box`` (x0, y0, x1, y1) pixels) in one
    output ``control``: a brush RLE, its polygons (one per part) or its rectangle; and a note
    when polygons leave small parts out (they stay in the brush output)."""
    if control.kind == "brush":
        return [region(control, brush_value(mask), label, width, height, score, meta)], None
    if control.kind == "rectangle":
        return [region(control, rectangle_value(box, width, height), label, width, height, score, meta)], None
    polys, cover = polygon_values(mask, width, height)
    note = None
    if cover.dropped_parts:
        note = cover.describe()
        meta = {**meta, "text": [meta["text"][0] + "; polygons: " + note], "polygon_coverage": round(cover.coverage, 4)}
    return [region(control, pv, label, width, height, score, meta) for pv in polys], note


def region_meta(top: Sequence[Tuple[str, float]], vocabulary_top_k: Optional[Sequence[Tuple[str, float]]] = None
                ) -> Dict[str, Any]:
    """A region's ``meta``: one line of text (shown by the editor), the project-label top-k and,
    with a preset vocabulary, the raw classes' top-k."""
    text = "ovsam: " + ", ".join(f"{n} {s:.2f}" for n, s in top)
    meta: Dict[str, Any] = {"text": [text], "top_k": [{"label": n, "score": round(s, 6)} for n, s in top]}
    if vocabulary_top_k:
        meta["vocabulary_top_k"] = [{"label": n, "score": round(float(s), 6)} for n, s in vocabulary_top_k[:5]]
    return meta
