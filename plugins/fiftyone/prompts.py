"""Prompts from FiftyOne labels: ``Detections`` give boxes, ``Keypoints`` give clicks.

* A :class:`fiftyone.core.labels.Detection` is one box prompt (its ``bounding_box``, relative
  ``[x, y, w, h]``, becomes pixels of the image).
* A :class:`fiftyone.core.labels.Keypoint` is one object prompted by all its points. A point is
  positive unless a per-point attribute (a list with one 0/1 per point; ``point_labels`` by
  default, SAM's ``sam_labels``/``sam2_labels`` are read too) marks it 0 (negative). Points that
  are NaN (FiftyOne's "missing keypoint") are ignored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ovsam_core import Prompt, PromptError, prompt_from_relative

from .store import dataset_name, field_kind, fields_of_kind

#: FiftyOne label types that can hold prompts -> prompt kind.
PROMPT_TYPES = {"Detections": "box", "Detection": "box", "Keypoints": "points", "Keypoint": "points"}
#: Per-point label attributes read, in order, when the configured one is absent.
FALLBACK_POINT_LABEL_ATTRS = ("point_labels", "sam_labels", "sam2_labels")


class PromptFieldError(ValueError):
    """The prompt field is missing or does not hold boxes or keypoints."""


@dataclass(frozen=True)
class PromptSource:
    """Where a prompt came from: the prompt label's id, label and kind (``box``/``points``)."""

    id: Optional[str]
    label: Optional[str]
    kind: str

    def attributes(self) -> Dict[str, str]:
        """The ``prompt_type`` / ``prompt_label`` / ``prompt_id`` attributes of its detection (None left out)."""
        values = {"prompt_type": self.kind, "prompt_label": self.label, "prompt_id": self.id}
        return {k: v for k, v in values.items() if v is not None}


def prompt_candidates(samples) -> List[str]:
    """Top-level fields of ``samples`` that can be prompt fields."""
    return fields_of_kind(samples, PROMPT_TYPES)


def check_prompt_field(samples, field: str) -> str:
    """The prompt kind (``box`` or ``points``) of ``field``; a clear error if it can't be one.

    Raises:
        PromptFieldError: no such field, or a field that is not Detections/Keypoints.
    """
    named = isinstance(field, str) and bool(field)
    kind = field_kind(samples, field) if named else None
    if kind in PROMPT_TYPES:
        return PROMPT_TYPES[kind]
    if not named:
        what = f"give a prompt field, got {field!r}"
    elif kind is None:
        what = f"prompt field {field!r} does not exist on dataset {dataset_name(samples)!r}"
    else:
        what = f"prompt field {field!r} holds {kind}, not prompts"
    raise PromptFieldError(f"{what}: use a Detections (boxes) or Keypoints (points) field; candidates: "
                           f"{', '.join(prompt_candidates(samples)) or 'none'}")


def label_kind(value, field: str) -> Optional[str]:
    """Prompt kind of a field's value on one sample (None when empty); error for other types."""
    if value is None:
        return None
    name = type(value).__name__
    if name not in PROMPT_TYPES:
        raise PromptFieldError(f"prompt field {field!r} holds {name}, not prompts: use a Detections (boxes) "
                               "or Keypoints (points) field")
    return PROMPT_TYPES[name]


def _items(value) -> Sequence:
    for attr in ("detections", "keypoints"):
        if hasattr(value, attr):
            return getattr(value, attr) or []
    return [value]


def _point_labels(kp, attr: str) -> Optional[List[int]]:
    for name in (attr, *FALLBACK_POINT_LABEL_ATTRS):
        try:
            labels = kp[name]
        except (KeyError, AttributeError):
            continue
        if labels is not None:
            return [int(v) for v in labels]
    return None


def sample_prompts(sample, fields: Sequence[str], width: int, height: int, point_labels_attr: str = "point_labels"
                   ) -> Tuple[List[Prompt], List[PromptSource], List[str]]:
    """The prompts of one sample's prompt fields, in pixels of a ``width`` x ``height`` image.

    Returns:
        ``(prompts, sources, problems)``; each prompt is validated against the image, and
        unusable items (an empty box, a box outside the image, no positive point, ...) are left
        out with one line in ``problems``. A sample without the field has no prompts.
    """
    prompts: List[Prompt] = []
    sources: List[PromptSource] = []
    problems: List[str] = []
    for field in fields:
        value = sample[field] if sample.has_field(field) else None
        kind = label_kind(value, field)
        for item in _items(value) if kind else []:
            try:
                if kind == "box":
                    prompts.append(prompt_from_relative(width, height, box=item.bounding_box or ()))
                else:
                    prompts.append(prompt_from_relative(width, height, points=item.points or [],
                                                        labels=_point_labels(item, point_labels_attr)))
                sources.append(PromptSource(str(item.id) if item.id is not None else None,
                                            getattr(item, "label", None), kind))
            except (PromptError, TypeError, ValueError) as e:
                problems.append(f"{field} {getattr(item, 'id', '?')}: {e}")
    return prompts, sources, problems
