"""Label config parsing (with label-studio-sdk's ``LabelInterface``): the prompt controls, the output
controls and their labels (static ``<Label>``\ s or dynamic ones from the task data), as the
README's *A label config* and *Labels* sections describe. :class:`ProjectLabel` is
:class:`ovsam_core.HostLabel`; :class:`ovsam_core.LabelMapper` maps class probabilities onto them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import List, Mapping, Optional, Tuple

from ovsam_core import (HostLabel as ProjectLabel, ServiceError, labels_from_json, merge_labels, parse_bool,
                        split_names, xml_text)

#: control tag -> kind
OUTPUT_TAGS = {"BrushLabels": "brush", "PolygonLabels": "polygon", "RectangleLabels": "rectangle"}
PROMPT_TAGS = {"KeyPointLabels": "keypoint", "RectangleLabels": "rectangle"}
#: result ``type`` -> kind (Label Studio writes the lower-cased tag name, or the kind for a region without labels)
RESULT_TYPES = {t: kind for tag, kind in {**OUTPUT_TAGS, **PROMPT_TAGS}.items() for t in (tag.lower(), kind)}
MAX_CONFIG_CHARS = 1_000_000


class LabelConfigError(ServiceError, ValueError):
    """The label config cannot be used by this backend; the message says why (answered with a 400)."""


@dataclass(frozen=True)
class Control:
    """A control tag on an image."""

    name: str
    tag: str
    to_name: str
    image_key: str
    labels: Tuple[ProjectLabel, ...]
    dynamic_field: Optional[str] = None
    smart: bool = False
    forced_output: Optional[bool] = None  # ovsam_output / ovsam_skip

    @property
    def kind(self) -> str:
        return OUTPUT_TAGS.get(self.tag) or PROMPT_TAGS[self.tag]

    def labels_for(self, task_data: Optional[Mapping] = None) -> Tuple[ProjectLabel, ...]:
        """Static labels, plus the task's dynamic labels when the control reads ``$field``."""
        if not self.dynamic_field:
            return self.labels
        return merge_labels(self.labels, labels_from_json((task_data or {}).get(self.dynamic_field)))


@dataclass(frozen=True)
class ProjectConfig:
    """The parts of a label config this backend uses."""

    controls: Tuple[Control, ...]

    @property
    def output_controls(self) -> Tuple[Control, ...]:
        def masks_beside(c: Control) -> bool:  # a smart RectangleLabels is an output in box-only projects only
            return any(o.to_name == c.to_name and o.tag in ("BrushLabels", "PolygonLabels") and o.forced_output is not False
                       for o in self.controls)

        return tuple(c for c in self.controls if c.tag in OUTPUT_TAGS and c.forced_output is not False and not (
            c.forced_output is None and c.tag == "RectangleLabels" and c.smart and masks_beside(c)))

    def outputs_for(self, to_name: str) -> Tuple[Control, ...]:
        return tuple(c for c in self.output_controls if c.to_name == to_name)

    def labels(self, data: Optional[Mapping], controls: Optional[Tuple[Control, ...]] = None) -> Tuple[ProjectLabel, ...]:
        """The labels of ``controls`` (default: all) for a task's ``data``, each name once."""
        return merge_labels(*(c.labels_for(data) for c in (self.controls if controls is None else controls)))

    def image_key(self, to_name: str) -> str:
        key = next((c.image_key for c in self.controls if c.to_name == to_name), None)
        if key is not None:
            return key
        raise LabelConfigError(f"no image named {to_name!r} in the label config")


def _parse(config: str) -> ProjectConfig:
    try:
        xml_text(config, "the label config", MAX_CONFIG_CHARS)  # empty, too long, DOCTYPE/ENTITY: refused
    except ValueError as e:
        raise LabelConfigError(str(e)) from None
    from label_studio_sdk.label_interface import LabelInterface

    try:
        li = LabelInterface(config)
    except Exception as e:  # noqa: BLE001 - the SDK raises many kinds for bad XML
        raise LabelConfigError(f"cannot parse the label config: {' '.join(str(e).split())[:300]}") from None
    controls: List[Control] = []
    for name, c in li._controls.items():  # the SDK exposes controls as a property too; same dict
        if c.tag not in OUTPUT_TAGS and c.tag not in PROMPT_TAGS:
            continue
        obj = next((o for o in (c.objects or []) if o.tag == "Image"), None)
        value = (obj.attr.get("value") or "") if obj is not None else ""
        if not value.startswith("$"):
            continue  # no image, or a fixed image URL in the config: nothing task-dependent to label
        labels = []
        for key, tag in (c.labels_attrs or {}).items():
            attr = getattr(tag, "attr", {}) or {}
            labels.append(ProjectLabel(str(key), str(attr.get("value") or key), split_names(attr.get("predicted_values"))))
        dyn = c.attr.get("value")

        def flag(name: str) -> bool:
            return parse_bool(str(c.attr.get(name) or ""))

        controls.append(Control(
            name=name, tag=c.tag, to_name=obj.name, image_key=value[1:], labels=tuple(labels),
            dynamic_field=dyn[1:] if isinstance(dyn, str) and dyn.startswith("$") else None,
            smart=flag("smart") or flag("smartOnly"),
            forced_output=False if flag("ovsam_skip") else True if flag("ovsam_output") else None))
    cfg = ProjectConfig(tuple(controls))
    if not cfg.output_controls:
        raise LabelConfigError(
            "the label config has no output this backend can fill: add a BrushLabels, PolygonLabels or "
            "RectangleLabels control on an <Image value=\"$...\"> (and KeyPointLabels/RectangleLabels "
            "smart=\"true\" for interactive prompts)")
    for c in cfg.output_controls:
        if not c.labels and not c.dynamic_field:
            raise LabelConfigError(f"output control {c.name!r} has no <Label> (and no dynamic labels value=\"$...\")")
    return cfg


def parse_label_config(config: str) -> ProjectConfig:
    """Parse (and cache) a label config; :class:`LabelConfigError` if unusable."""
    return _parse_cached(config) if isinstance(config, str) else _parse(config)


_parse_cached = functools.lru_cache(maxsize=64)(_parse)  # Label Studio sends the config with every request
