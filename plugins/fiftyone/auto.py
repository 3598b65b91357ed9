"""Prompt-free labelling in FiftyOne terms: classes, settings, and results as ``Detections``.

Classes: a list of names (``"dog,puppy"``: synonyms), text (``"dog|puppy, cat"``, a preset, a
vocabulary file) or the labels of an existing field (``classes_field``). ``find`` looks for them
(they compete with the model's own vocabulary); ``everything`` names every object with the
model's vocabulary and keeps those whose class is one of them (all, without classes). Default:
find with classes, everything without. Used by :class:`~ovsam_plugins.fiftyone.model.OVSAMModel`
(no prompt field) and :func:`~ovsam_plugins.fiftyone.labeling.label_everything` (resumable).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

from ovsam_core import AutoSettings, HostLabel, PrelabelResult, labels_from_names, load_vocabulary, parse_vocabulary_text

from .store import dataset_name, field_kind

Classes = Union[None, str, Sequence[str]]
#: label types whose labels can be classes, and the path of their labels
LABEL_LISTS = {"Detections": ".detections", "Polylines": ".polylines", "Keypoints": ".keypoints",
               "Classifications": ".classifications", "Detection": "", "Classification": "", "Polyline": ""}


def host_labels(classes: Classes) -> Optional[List[HostLabel]]:
    """Host labels of ``classes`` (None: none). A name's first synonym is the label written."""
    if classes is None:
        return None
    if isinstance(classes, str):
        parsed = parse_vocabulary_text(classes)
        if parsed is None:
            return None
        classes = parsed if isinstance(parsed, list) else list(load_vocabulary(parsed).names)
    return labels_from_names(classes) or None


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


def auto_settings(classes: Optional[List[HostLabel]], mode: Optional[str] = None, **values) -> AutoSettings:
    """:class:`AutoSettings` (mode default: find with classes, else everything); validated."""
    mode = mode if mode not in (None, "", "auto", "default") else ("find" if classes else "everything")
    settings = AutoSettings.parse({"mode": mode, **{k: v for k, v in values.items() if v is not None}})
    if settings.mode == "off":
        raise ValueError("mode 'off' labels nothing: choose find or everything")
    return settings


def to_detections(result: PrelabelResult):
    """``fo.Detections`` of a whole-image :class:`PrelabelResult` (relative boxes, cropped masks)."""
    import fiftyone.core.labels as fol

    h, w = result.image_size
    return fol.Detections(detections=[fol.Detection(
        label=o.label, confidence=float(o.score), bounding_box=list(o.relative_box(w, h)), mask=o.crop(),
        top_k_labels=[n for n, _ in o.object.top_k], top_k_scores=[float(s) for _, s in o.object.top_k],
        mask_area=int(o.object.area), stability=float(o.object.quality.get("stability", 0.0)))
        for o in result.objects])

