"""Host labels written as JSON or as attribute text, turned into :class:`~ovsam_core.HostLabel`.

Labelling hosts let a project declare labels in its data rather than its config (Label Studio's
dynamic labels: a task field holding ``["cat", {"value": "dog", "alias": "Dog",
"predicted_values": "puppy, hound"}]``) and write a label's synonyms as comma-separated text
(``predicted_values="puppy, hound"``). A :class:`HostLabel` made here has ``name`` = the alias
when there is one, else the value (what results carry, as Label Studio does), ``text`` = the
value (what is embedded) and ``synonyms`` = the other names.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

from .labelmap import HostLabel, merge_labels


def split_names(v: Any) -> Tuple[str, ...]:
    """``"a, b"`` or ``["a", " b "]`` -> ``("a", "b")``: stripped, empty names left out (anything
    else, e.g. None or a number, -> ``()``)."""
    items = v.split(",") if isinstance(v, str) else v if isinstance(v, (list, tuple)) else ()
    return tuple(str(s).strip() for s in items if str(s).strip())


def label_from_json(item: Any) -> Optional[HostLabel]:
    """A label from ``"name"`` or ``{"value": str, "alias"?: str, "predicted_values"?: str | list}``;
    None for anything else (a dict without a string ``value``, a number ...)."""
    if isinstance(item, str):
        return HostLabel(item, item)
    if isinstance(item, dict) and isinstance(item.get("value"), str):
        return HostLabel(str(item.get("alias") or item["value"]), item["value"],
                         split_names(item.get("predicted_values")))
    return None


def labels_from_json(raw: Any) -> Tuple[HostLabel, ...]:
    """Labels from a JSON value: one item (:func:`label_from_json`) or a list of them; unusable
    items are skipped, each name is kept once; anything else (None, a number) gives ``()``."""
    items = [raw] if isinstance(raw, (str, dict)) else raw if isinstance(raw, list) else []
    return merge_labels(lab for lab in map(label_from_json, items) if lab is not None)
