"""Label config parsing (with label-studio-sdk's ``LabelInterface``) and label mapping.

What the backend reads from a project's label config:

* **prompt controls**: ``KeyPointLabels`` and ``RectangleLabels`` (``smart="true"`` for the
  interactive smart tools; in batch mode their regions in annotations/predictions are prompts);
* **output controls**: every ``BrushLabels``, ``PolygonLabels`` and ``RectangleLabels`` on an
  ``Image``. A *smart* ``RectangleLabels`` is an output only when the image has no brush or
  polygon output (a box-only project). ``ovsam_skip="true"`` on a control removes it from the
  outputs, ``ovsam_output="true"`` forces it in;
* **labels**: ``<Label value=... alias=... predicted_values="a, b">`` (the result uses the alias
  when there is one, as Label Studio does), or dynamic labels ``<XLabels value="$field">`` read
  from the task data (a list of strings or of ``{"value": ..., "alias"?, "predicted_values"?}``).

:class:`ovsam_core.LabelMapper` turns class probabilities of any vocabulary into probabilities
of the project's labels (:class:`ProjectLabel` is :class:`ovsam_core.HostLabel`: the result name,
the value that is embedded, the predicted values as synonyms).
"""
from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

from ovsam_core import HostLabel as ProjectLabel, LabelMapper, normalise  # noqa: F401 - re-exported

#: control tag -> kind
OUTPUT_TAGS = {"BrushLabels": "brush", "PolygonLabels": "polygon", "RectangleLabels": "rectangle"}
PROMPT_TAGS = {"KeyPointLabels": "keypoint", "RectangleLabels": "rectangle"}
#: result ``type`` -> kind (Label Studio writes the lower-cased tag name)
RESULT_TYPES = {"keypointlabels": "keypoint", "keypoint": "keypoint", "rectanglelabels": "rectangle",
                "rectangle": "rectangle", "polygonlabels": "polygon", "polygon": "polygon",
                "brushlabels": "brush", "brush": "brush"}
MAX_CONFIG_CHARS = 1_000_000


class LabelConfigError(ValueError):
    """The label config cannot be used by this backend; the message says why."""


def _truthy(v: Optional[str]) -> bool:
    return str(v or "").strip().lower() in ("true", "1", "yes")


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

    @property
    def result_type(self) -> str:
        return self.tag.lower()

    def labels_for(self, task_data: Optional[Mapping] = None) -> Tuple[ProjectLabel, ...]:
        """Static labels, plus the task's dynamic labels when the control reads ``$field``."""
        if not self.dynamic_field:
            return self.labels
        raw = (task_data or {}).get(self.dynamic_field) or []
        out = list(self.labels)
        seen = {lab.name for lab in out}
        if isinstance(raw, (str, dict)):
            raw = [raw]
        for item in raw if isinstance(raw, list) else []:
            if isinstance(item, str):
                lab = ProjectLabel(item, item)
            elif isinstance(item, dict) and isinstance(item.get("value"), str):
                pv = item.get("predicted_values") or ()
                if isinstance(pv, str):
                    pv = [s.strip() for s in pv.split(",")]
                lab = ProjectLabel(str(item.get("alias") or item["value"]), item["value"],
                                   tuple(str(s).strip() for s in pv if str(s).strip()))
            else:
                continue
            if lab.name not in seen:
                seen.add(lab.name)
                out.append(lab)
        return tuple(out)


@dataclass(frozen=True)
class ProjectConfig:
    """The parts of a label config this backend uses."""

    controls: Tuple[Control, ...]
    digest: str

    @property
    def prompt_controls(self) -> Tuple[Control, ...]:
        return tuple(c for c in self.controls if c.tag in PROMPT_TAGS)

    @property
    def output_controls(self) -> Tuple[Control, ...]:
        out = []
        for c in self.controls:
            if c.tag not in OUTPUT_TAGS or c.forced_output is False:
                continue
            if c.forced_output is None and c.tag == "RectangleLabels" and c.smart:
                others = [o for o in self.controls if o.to_name == c.to_name and o.tag in ("BrushLabels", "PolygonLabels")
                          and o.forced_output is not False]
                if others:
                    continue
            out.append(c)
        return tuple(out)

    def control(self, name: str) -> Optional[Control]:
        for c in self.controls:
            if c.name == name:
                return c
        return None

    def outputs_for(self, to_name: str) -> Tuple[Control, ...]:
        return tuple(c for c in self.output_controls if c.to_name == to_name)

    def labels(self, data: Optional[Mapping], controls: Optional[Tuple[Control, ...]] = None) -> Tuple[ProjectLabel, ...]:
        """The labels of ``controls`` (default: all) for a task's ``data``, each name once."""
        out: Dict[str, ProjectLabel] = {}
        for c in self.controls if controls is None else controls:
            for lab in c.labels_for(data):
                out.setdefault(lab.name, lab)
        return tuple(out.values())

    def image_key(self, to_name: str) -> str:
        for c in self.controls:
            if c.to_name == to_name:
                return c.image_key
        raise LabelConfigError(f"no image named {to_name!r} in the label config")


def _parse(config: str) -> ProjectConfig:
    if not isinstance(config, str) or not config.strip():
        raise LabelConfigError("the label config is empty")
    if len(config) > MAX_CONFIG_CHARS:
        raise LabelConfigError(f"the label config is larger than {MAX_CONFIG_CHARS} characters")
    if re.search(r"<!(DOCTYPE|ENTITY)", config, re.IGNORECASE):
        raise LabelConfigError("label configs with DOCTYPE or ENTITY declarations are refused")
    from label_studio_sdk.label_interface import LabelInterface

    try:
        li = LabelInterface(config)
    except Exception as e:  # noqa: BLE001 - the SDK raises many kinds for bad XML
        raise LabelConfigError(f"cannot parse the label config: {' '.join(str(e).split())[:300]}") from None
    controls: List[Control] = []
    for name, c in li._controls.items():  # the SDK exposes controls as a property too; same dict
        if c.tag not in OUTPUT_TAGS and c.tag not in PROMPT_TAGS:
            continue
        images = [o for o in (c.objects or []) if o.tag == "Image"]
        if not images:
            continue
        obj = images[0]
        value = obj.attr.get("value") or ""
        if not value.startswith("$"):
            continue  # a fixed image URL in the config: nothing task-dependent to label
        labels = []
        for key, tag in (c.labels_attrs or {}).items():
            attr = getattr(tag, "attr", {}) or {}
            pv = [s.strip() for s in str(attr.get("predicted_values", "")).split(",") if s.strip()]
            labels.append(ProjectLabel(str(key), str(attr.get("value") or key), tuple(pv)))
        dyn = c.attr.get("value")
        forced = None
        if _truthy(c.attr.get("ovsam_skip")):
            forced = False
        elif _truthy(c.attr.get("ovsam_output")):
            forced = True
        controls.append(Control(
            name=name, tag=c.tag, to_name=obj.name, image_key=value[1:], labels=tuple(labels),
            dynamic_field=dyn[1:] if isinstance(dyn, str) and dyn.startswith("$") else None,
            smart=_truthy(c.attr.get("smart")) or _truthy(c.attr.get("smartOnly")), forced_output=forced))
    cfg = ProjectConfig(tuple(controls), hashlib.sha256(config.encode()).hexdigest()[:16])
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
