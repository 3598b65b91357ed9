"""Label Studio regions (percent of the image) <-> prompts and masks (original-image pixels).

Label Studio stores geometry in percent of the original image: ``x``/``width`` of its width,
``y``/``height`` of its height; a rectangle's ``rotation`` (degrees, clockwise) turns it about its
top-left corner. This module converts regions of the kinds the backend reads into
:class:`ovsam_core.Prompt` objects (keypoints, rectangles) and into masks (rectangles,
polygons, brush RLE) for learning.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ovsam_core import Prompt, click_prompt, clip_point, mask_prompt, polygon_to_mask, rotated_box_bounds

from .labels import RESULT_TYPES


class RegionError(ValueError):
    """A region that cannot be read (bad numbers, unknown format)."""


def _num(v: Any, what: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise RegionError(f"{what} is not a number: {v!r}") from None
    if not math.isfinite(f):
        raise RegionError(f"{what} is not finite: {v!r}")
    return f


def region_kind(item: Mapping) -> Optional[str]:
    """``keypoint``, ``rectangle``, ``polygon``, ``brush`` or None for other result types."""
    return RESULT_TYPES.get(str(item.get("type", "")).lower()) if isinstance(item, Mapping) else None


def region_labels(item: Mapping) -> List[str]:
    """The labels of a region (``value[<type>]``, e.g. ``value["rectanglelabels"]``)."""
    value = item.get("value") or {}
    t = str(item.get("type", "")).lower()
    labs = value.get(t) if isinstance(value, Mapping) else None
    if labs is None and isinstance(value, Mapping):
        for k, v in value.items():
            if k.endswith("labels") and isinstance(v, list):
                labs = v
                break
    return [str(x) for x in labs] if isinstance(labs, list) else []


def rect_box(value: Mapping, width: int, height: int) -> Tuple[float, float, float, float]:
    """Axis-aligned pixel box (x0, y0, x1, y1) of a (possibly rotated) rectangle value."""
    return rotated_box_bounds(_num(value.get("x"), "rectangle x") * width / 100.0,
                              _num(value.get("y"), "rectangle y") * height / 100.0,
                              _num(value.get("width"), "rectangle width") * width / 100.0,
                              _num(value.get("height"), "rectangle height") * height / 100.0,
                              _num(value.get("rotation", 0) or 0, "rectangle rotation"))


def keypoint_xy(value: Mapping, width: int, height: int) -> Tuple[float, float]:
    """The keypoint's pixel position, moved into the image."""
    return clip_point(_num(value.get("x"), "keypoint x") * width / 100.0,
                      _num(value.get("y"), "keypoint y") * height / 100.0, width, height)


@dataclass(frozen=True)
class PromptRegion:
    """A prompt with where it came from."""

    prompt: Prompt
    to_name: str
    label: Optional[str]  # the label on the prompt region (the smart tool's selected label)
    source_id: Optional[str] = None


def interactive_prompt(items: Sequence[Mapping], width: int, height: int,
                       to_name: str) -> Optional[PromptRegion]:
    """One prompt from a smart-tool context: all keypoints (``is_positive``) + the last rectangle."""
    points: List[Tuple[float, float, int]] = []
    box = None
    label = None
    for it in items:
        if it.get("to_name") != to_name:
            continue
        kind = region_kind(it)
        value = it.get("value") or {}
        if kind == "keypoint":
            x, y = keypoint_xy(value, width, height)
            positive = it.get("is_positive", True)
            points.append((x, y, 0 if positive is False or str(positive).lower() == "false" else 1))
        elif kind == "rectangle":
            box = rect_box(value, width, height)
        else:
            continue
        labs = region_labels(it)
        if labs:
            label = labs[0]
    prompt = click_prompt(points, box)  # None: no box and only negative clicks so far
    return None if prompt is None else PromptRegion(prompt, to_name, label)


def batch_prompts(items: Sequence[Mapping], width: int, height: int, to_name: str) -> List[PromptRegion]:
    """One prompt per rectangle and per positive keypoint of an annotation or prediction."""
    out: List[PromptRegion] = []
    for it in items:
        if not isinstance(it, Mapping) or it.get("to_name") != to_name:
            continue
        kind = region_kind(it)
        value = it.get("value") or {}
        labs = region_labels(it)
        try:
            if kind == "rectangle":
                out.append(PromptRegion(Prompt.from_box(*rect_box(value, width, height)), to_name,
                                        labs[0] if labs else None, it.get("id")))
            elif kind == "keypoint" and it.get("is_positive", True) is not False:
                out.append(PromptRegion(Prompt.from_points([keypoint_xy(value, width, height)]), to_name,
                                        labs[0] if labs else None, it.get("id")))
        except RegionError:
            continue
    return out


def prompt_source(task: Mapping) -> Tuple[List[Mapping], str]:
    """Prompt regions (rectangles, keypoints) of the task's newest annotation that has any, else
    of another model's prediction (never ovsam's own); and where they came from."""
    def prompt_items(result) -> List[Mapping]:
        return [it for it in (result or []) if isinstance(it, Mapping) and region_kind(it) in ("rectangle", "keypoint")]

    anns = [a for a in (task.get("annotations") or []) if isinstance(a, Mapping) and not a.get("was_cancelled")]
    anns.sort(key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""), reverse=True)
    for a in anns:
        items = prompt_items(a.get("result"))
        if items:
            return items, f"annotation {a.get('id')}"
    for p in task.get("predictions") or []:
        if not isinstance(p, Mapping) or str(p.get("model_version", "")).startswith("ovsam-"):
            continue
        items = prompt_items(p.get("result"))
        if items:
            return items, f"prediction {p.get('id')} ({p.get('model_version')})"
    return [], ""


# ------------------------------------------------------------------------------------- masks
def polygon_mask(points_pct: Sequence[Sequence[float]], width: int, height: int) -> np.ndarray:
    """(H, W) bool of a polygon given in percent (:func:`ovsam_core.polygon_to_mask`: pixel centres
    inside); polygons written by :mod:`.outputs` rasterise back to exactly their pixels."""
    pts = [(_num(p[0], "polygon x") * width / 100.0, _num(p[1], "polygon y") * height / 100.0) for p in points_pct]
    try:
        return polygon_to_mask(pts, height, width)
    except ValueError as e:
        raise RegionError(str(e)) from None


def brush_mask(value: Mapping, width: int, height: int) -> np.ndarray:
    """(H, W) bool of a brush value in Label Studio's RLE format."""
    from label_studio_sdk.converter.brush import decode_rle

    if value.get("format", "rle") != "rle" or not isinstance(value.get("rle"), list):
        raise RegionError("only brush regions in Label Studio's 'rle' format can be read")
    try:
        flat = np.asarray(decode_rle(value["rle"]), dtype=np.uint8)
    except Exception as e:  # noqa: BLE001
        raise RegionError(f"cannot decode the brush RLE: {e}") from None
    if flat.size != width * height * 4:
        raise RegionError(f"brush RLE holds {flat.size} values, expected {width}x{height}x4")
    return flat.reshape(height, width, 4)[:, :, 3] > 0


def region_geometry(item: Mapping, width: int, height: int) -> Tuple[Optional[Prompt], Optional[np.ndarray]]:
    """(prompt, mask) describing a human-labelled region: the prompt re-segments it, the mask (when
    the region has one) is where its appearance is read."""
    kind = region_kind(item)
    value = item.get("value") or {}
    if kind == "rectangle":
        return Prompt.from_box(*rect_box(value, width, height)), None
    if kind == "keypoint":
        return Prompt.from_points([keypoint_xy(value, width, height)]), None
    if kind == "polygon":
        mask = polygon_mask(value.get("points") or [], width, height)
    elif kind == "brush":
        mask = brush_mask(value, width, height)
    else:
        return None, None
    prompt = mask_prompt(mask)
    return (prompt, mask) if prompt is not None else (None, None)
