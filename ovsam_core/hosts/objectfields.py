"""The fields of one result object as dataset tools store a detection: relative box, cropped mask.

FiftyOne (and other dataset tools) keep an instance as a label, a confidence, a relative
``[x, y, w, h]`` box (fractions of the image, top-left first) and a mask **cropped to that box**.
:func:`object_fields` gives those fields, plus the attributes ovsam adds (``top_k_labels`` /
``top_k_scores``, ``mask_area``, ``stability``, ``label_path``), for a prompted
:class:`~ovsam_core.ObjectPrediction` or a pre-labelled :class:`~ovsam_core.LabeledObject`, so
that a host only wraps them in its own label type.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from .prelabel import LabeledObject
from ..predictor import ObjectPrediction
from .relative import pixels_to_relative, prompt_result_box


def _names(indices: Sequence[int], fallback: Sequence[str], names: Optional[Sequence[str]]):
    """Class names by vocabulary index (``names``), else the display names of the result."""
    if names is not None and len(indices) == len(fallback):
        return [names[i] for i in indices]
    return list(fallback)


def object_fields(obj, width: int, height: int, names: Optional[Sequence[str]] = None,
                  display: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """The detection fields of one result object in a ``width`` x ``height`` image.

    Args:
        obj: a prompted :class:`ObjectPrediction` (box: the mask's tight box, or the prompt's box
            when the mask is empty) or a :class:`LabeledObject` (its host label is the label).
        names: the name a host writes for each vocabulary index (e.g. the first synonym, from
            :func:`ovsam_core.written_names`); the label and ``top_k_labels`` of an
            :class:`ObjectPrediction` are taken from it by index; default the display names.
        display: display name -> written name, for ``label_path`` (ancestors are display names).
    Returns:
        ``label``, ``confidence``, ``bounding_box`` (relative ``[x, y, w, h]``), ``mask`` ((h, w)
        bool, the box's pixels), ``top_k_labels``, ``top_k_scores``, ``mask_area``, ``stability``,
        and ``label_path`` when the vocabulary is hierarchical.
    """
    if isinstance(obj, LabeledObject):
        core = obj.object
        label, box, mask = obj.label, list(obj.relative_box(width, height)), obj.crop()
        top = [n for n, _ in core.top_k]
    elif isinstance(obj, ObjectPrediction):
        core = obj
        x0, y0, x1, y1 = prompt_result_box(obj.prompt, obj.bbox_xyxy if obj.area else None, width, height)
        box = list(pixels_to_relative(x0, y0, x1, y1, width, height))
        mask = np.ascontiguousarray(obj.mask[y0:y1, x0:x1])
        label = names[obj.label_index] if names is not None else obj.label
        top = _names(obj.top_k_indices, [n for n, _ in obj.top_k], names)
    else:
        raise TypeError(f"object_fields takes an ObjectPrediction or a LabeledObject, not {type(obj).__name__}")
    out: Dict[str, Any] = {
        "label": label, "confidence": float(obj.score), "bounding_box": box, "mask": mask, "top_k_labels": top,
        "top_k_scores": [float(s) for _, s in core.top_k], "mask_area": int(core.area),
        "stability": float(core.quality.get("stability", 0.0))}
    if core.label_path:
        out["label_path"] = [(display or {}).get(n, n) for n in core.label_path]
    return out
