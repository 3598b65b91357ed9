"""Serialising predictions: the JSON contract (COCO RLE masks) and the overlay picture.

JSON contract (stable; version in ``"format"``)::

    {"format": "ovsam-prediction-v1",
     "image": {"path": str | null, "width": int, "height": int},
     "model": str, "mode": "head" | "fused", "vocabulary": str,
     "objects": [                                   # one per prompt, in prompt order
        {"prompt": {"points": [[x, y, label], ...], "box": [x0, y0, x1, y1]},
         "label": str, "score": float,
         "top_k": [{"label": str, "score": float, "index": int}, ...],   # index: vocabulary index
         "bbox_xyxy": [x0, y0, x1, y1],             # tight box of the mask, exclusive end
         "area": int,
         "quality": {"mean_logit": float, "stability": float},
         "label_path": [str, ...],                  # ancestors in a hierarchical vocabulary
         "mask": {"size": [h, w], "counts": str}}]}  # COCO RLE (pycocotools), original size

All coordinates are original-image pixels.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .predictor import ObjectPrediction, Prediction

FORMAT = "ovsam-prediction-v1"


def mask_to_rle(mask: np.ndarray) -> Dict[str, Any]:
    """(H, W) bool -> COCO compressed RLE ``{"size": [h, w], "counts": str}``."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: Dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`mask_to_rle`."""
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def _num(x: float) -> Optional[float]:
    return None if not math.isfinite(x) else round(float(x), 6)


def _indices(o) -> List[Optional[int]]:
    idx = list(getattr(o, "top_k_indices", ()) or ())
    return idx if len(idx) == len(o.top_k) else [None] * len(o.top_k)


def _named(o) -> Dict[str, Any]:
    """The fields every object carries, prompted or not: label, scores, box, area, quality."""
    return {
        "label": o.label,
        "score": _num(o.score),
        "top_k": [{"label": lab, "score": _num(s), **({"index": i} if i is not None else {})}
                  for (lab, s), i in zip(o.top_k, _indices(o))],
        "bbox_xyxy": list(o.bbox_xyxy),
        "area": o.area,
        "quality": {k: _num(v) for k, v in o.quality.items()},
        "label_path": list(o.label_path),
    }


def _header(res, image_path: Optional[str]) -> Dict[str, Any]:
    h, w = res.image_size
    return {"format": FORMAT, "image": {"path": image_path, "width": w, "height": h},
            "model": res.model, "mode": res.mode, "vocabulary": res.vocabulary}


def object_to_json(o: ObjectPrediction) -> Dict[str, Any]:
    return {"prompt": o.prompt.to_json(), **_named(o), "mask": mask_to_rle(o.mask)}


def prediction_to_json(pred: Prediction, image_path: Optional[str] = None) -> Dict[str, Any]:
    return {**_header(pred, image_path), "objects": [object_to_json(o) for o in pred.objects]}


def auto_object_to_json(o) -> Dict[str, Any]:
    """An :class:`~ovsam_core.automatic.AutoObject` in the prompt-mode object schema, plus the
    grid ``point`` that produced it (also given as its ``prompt``), ``query`` (find mode) and
    ``crop_box``."""
    x, y = round(o.point[0], 3), round(o.point[1], 3)
    return {"prompt": {"points": [[x, y, 1]]}, "point": [x, y], "query": o.query, **_named(o),
            "crop_box": list(o.crop_box), "mask": dict(o.rle)}


def auto_result_to_json(res, image_path: Optional[str] = None) -> Dict[str, Any]:
    """An :class:`~ovsam_core.automatic.AutoResult` as ``ovsam-prediction-v1`` JSON, with an
    ``"auto"`` block: ``{"task": "everything" | "find", "settings": {...}}``; objects best first."""
    task = "find" if "queries" in res.settings else "everything"
    return {**_header(res, image_path), "auto": {"task": task, "settings": dict(res.settings)},
            "objects": [auto_object_to_json(o) for o in res.objects]}


_COLORS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]


def render_overlay(rgb: np.ndarray, objects: Sequence[ObjectPrediction], alpha: float = 0.45):
    """A PIL image: each mask tinted, its tight box, the prompt (or the grid point of a
    prompt-free object), and ``label (score)``."""
    from PIL import Image, ImageDraw, ImageFont

    base = rgb.astype(np.float32).copy()
    for i, o in enumerate(objects):
        c = np.array(_COLORS[i % len(_COLORS)], np.float32)
        m = o.mask
        base[m] = base[m] * (1 - alpha) + c * alpha
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    size = max(12, min(img.size) // 40)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    width = max(2, min(img.size) // 300)
    for i, o in enumerate(objects):
        c = _COLORS[i % len(_COLORS)]
        if o.area:
            draw.rectangle(o.bbox_xyxy, outline=c, width=width)
        # prompt-free objects (segment everything / find) show the grid point that found them
        box, points, labels = _prompt_marks(o)
        if box is not None:
            draw.rectangle(box, outline=(255, 255, 255), width=1)
        r = max(3, size // 3)
        for (x, y), lab in zip(points, labels):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(0, 200, 0) if lab else (220, 0, 0),
                         outline=(255, 255, 255))
        text = f"{o.label} ({o.score:.2f})"
        # Anchor the label at the prompt (a box corner or the first point): masks may overlap.
        if box is not None:
            x0, y0 = box[0], box[1]
        else:
            x0, y0 = points[labels.index(1) if 1 in labels else 0]
        tb = draw.textbbox((x0, y0), text, font=font)
        ty = y0 - (tb[3] - tb[1]) - 4 if y0 - (tb[3] - tb[1]) - 4 >= 0 else y0
        tb = draw.textbbox((x0, ty), text, font=font)
        draw.rectangle((tb[0] - 2, tb[1] - 2, tb[2] + 2, tb[3] + 2), fill=c)
        draw.text((x0, ty), text, fill=(0, 0, 0) if sum(c) > 380 else (255, 255, 255), font=font)
    return img


def _prompt_marks(o):
    """(box or None, points, labels) to draw for an object: its prompt, or its grid point."""
    prompt = getattr(o, "prompt", None)
    if prompt is not None:
        return prompt.box, list(prompt.points), list(prompt.labels)
    return None, [tuple(o.point)], [1]


def save_overlay(rgb: np.ndarray, objects: Sequence[ObjectPrediction], path) -> Path:
    path = Path(path)
    render_overlay(rgb, objects).save(path)
    return path
