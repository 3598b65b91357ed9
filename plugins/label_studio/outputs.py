"""Masks -> Label Studio result regions in percent coordinates (:func:`ovsam_core.pixels_to_relative`
with ``scale=100``): brush RLE (Label Studio's own, ``label_studio_sdk.converter.brush``; not
COCO RLE), polygons (:func:`ovsam_core.mask_to_polygons`: one region per part, largest first,
what is left out reported) and rectangles (the mask's tight box); see the README's *Outputs*.
"""
from __future__ import annotations

import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ovsam_core import MaskPolygons, mask_to_polygons, pixels_to_relative, pixels_to_relative_points


def mask_to_brush_rle(mask: np.ndarray) -> List[int]:
    """(H, W) bool -> Label Studio brush RLE (read back by :func:`~.regions.brush_mask`)."""
    from label_studio_sdk.converter.brush import mask2rle

    return [int(v) for v in mask2rle(np.ascontiguousarray(mask, dtype=np.uint8) * np.uint8(255))]


def region(control, value: Dict[str, Any], label: str, width: int, height: int, score: float,
           meta: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A result region for ``control`` with its label list filled (its ``type``: the tag lower-cased)."""
    kind = control.tag.lower()
    out: Dict[str, Any] = {"id": uuid.uuid4().hex[:10], "from_name": control.name, "to_name": control.to_name,
                           "type": kind, "original_width": int(width), "original_height": int(height),
                           "image_rotation": 0, "value": {**value, kind: [label]}, "score": round(float(score), 6),
                           "readonly": False}
    return {**out, "meta": meta} if meta else out


def polygon_values(mask: np.ndarray, width: int, height: int, **kw) -> Tuple[List[Dict[str, Any]], MaskPolygons]:
    """Polygon values (percent) of a mask's parts, and what they cover (``kw``: see ``mask_to_polygons``)."""
    res = mask_to_polygons(mask, **kw)
    return [{"points": pixels_to_relative_points(poly, width, height, 100, 4), "closed": True}
            for poly in res.polygons], res


def rectangle_value(box: Tuple[float, float, float, float], width: int, height: int) -> Dict[str, Any]:
    return {**dict(zip(("x", "y", "width", "height"), pixels_to_relative(*box, width, height, 100, 4))), "rotation": 0}


def object_regions(control, mask: np.ndarray, box, label: str, width: int, height: int, score: float,
                   meta: Dict[str, Any]) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """The regions of one object (``mask`` (H, W) bool, ``box`` (x0, y0, x1, y1) pixels) in one
    output ``control``: a brush RLE, its polygons (one per part) or its rectangle; and a note
    when polygons leave small parts out (they stay in the brush output)."""
    if control.kind == "brush":
        return [region(control, {"format": "rle", "rle": mask_to_brush_rle(mask)}, label, width, height, score, meta)], None
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
