"""Prompt-free labelling in FiftyOne terms: classes, settings, and results as ``Detections``.

Classes: a list of names (``"dog,puppy"``: synonyms), text (``"dog|puppy, cat"``, a preset, a
vocabulary file) or the labels of an existing field (``classes_field``). ``find`` looks for them
(they compete with the model's own vocabulary); ``everything`` names every object with the
model's vocabulary and keeps those whose class is one of them (all, without classes). Default:
find with classes, everything without. Used by :class:`~ovsam_plugins.fiftyone.model.OVSAMModel`
(no prompt field) and :func:`~ovsam_plugins.fiftyone.labeling.label_everything` (resumable).
"""
from __future__ import annotations

from typing import List, Sequence, Union

from ovsam_core import PrelabelResult, object_fields

from .store import dataset_name, field_kind

Classes = Union[None, str, Sequence[str]]
#: label types whose labels can be classes, and the path of their labels
LABEL_LISTS = {"Detections": ".detections", "Polylines": ".polylines", "Keypoints": ".keypoints",
               "Classifications": ".classifications", "Detection": "", "Classification": "", "Polyline": ""}


def field_classes(samples, field: str) -> List[str]:
    """The distinct labels of a label field (Detections, Classification(s), Polylines, Keypoints)."""
    kind = field_kind(samples, field)
    if kind not in LABEL_LISTS:
        raise ValueError(f"classes field {field!r} does not exist on dataset {dataset_name(samples)!r}" if kind is None
                         else f"classes field {field!r} holds {kind}, not labels; give a {', '.join(LABEL_LISTS)} field")
    names = sorted(v for v in samples.distinct(f"{field}{LABEL_LISTS[kind]}.label") if v)
    if not names:
        raise ValueError(f"classes field {field!r} has no labels; give classes=[...] instead")
    return names


def to_detections(result: PrelabelResult):
    """``fo.Detections`` of a whole-image :class:`PrelabelResult` (relative boxes, cropped masks)."""
    import fiftyone.core.labels as fol

    h, w = result.image_size
    return fol.Detections(detections=[fol.Detection(**object_fields(o, w, h)) for o in result.objects])
