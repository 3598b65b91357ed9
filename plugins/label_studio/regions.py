"""Label Studio regions <-> prompts and masks (original-image pixels).

Label Studio stores geometry in percent of the original image (:mod:`ovsam_core.hosts.relative`
with ``scale=100``; a rectangle's ``rotation`` turns it clockwise about its top-left corner).
Keypoints and rectangles become :class:`ovsam_core.Prompt` objects; rectangles, polygons and
brush RLE become masks for learning.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ovsam_core import (Prompt, click_prompt, clip_point, mask_prompt, polygon_to_mask, relative_box_bounds,
                        relative_to_pixels)

from .labels import RESULT_TYPES


class RegionError(ValueError):
    """A region that cannot be read (bad numbers, unknown format)."""


def region_kind(item: Mapping) -> Optional[str]:
    """``keypoint``, ``rectangle``, ``polygon``, ``brush`` or None for other result types."""
    return RESULT_TYPES.get(str(item.get("type", "")).lower()) if isinstance(item, Mapping) else None


def region_labels(item: Mapping) -> List[str]:
    """The labels of a region (``value[<type>]``, e.g. ``value["rectanglelabels"]``)."""
    value = item.get("value")
    if not isinstance(value, Mapping):
        return []
    labs = value.get(str(item.get("type", "")).lower())
    if labs is None:
        labs = next((v for k, v in value.items() if k.endswith("labels") and isinstance(v, list)), None)
    return [str(x) for x in labs] if isinstance(labs, list) else []


@dataclass(frozen=True)
class PromptRegion:
    """A prompt with where it came from."""

    prompt: Prompt
    to_name: str
    label: Optional[str]  # the label on the prompt region (the smart tool's selected label)


def prompt_items(items: Optional[Sequence], to_name: Optional[str] = None) -> List[Mapping]:
    """The keypoints and rectangles of ``items`` (on the image ``to_name``, when given)."""
    return [it for it in items or [] if region_kind(it) in ("keypoint", "rectangle")
            and (to_name is None or it.get("to_name") == to_name)]


def interactive_prompt(items: Sequence[Mapping], width: int, height: int,
                       to_name: str) -> Optional[PromptRegion]:
    """One prompt from a smart-tool context: all keypoints (``is_positive``) + the last rectangle."""
    points: List[Tuple[float, float, int]] = []
    box = label = None
    for it in prompt_items(items, to_name):
        prompt, _ = region_geometry(it, width, height)
        if prompt.box is None:
            positive = str(it.get("is_positive", True)).lower() != "false"  # False or "false": negative
            points.append((*prompt.points[0], int(positive)))
        else:
            box = prompt.box
        label = next(iter(region_labels(it)), label)
    prompt = click_prompt(points, box)  # None: no box and only negative clicks so far
    return None if prompt is None else PromptRegion(prompt, to_name, label)


def batch_prompts(items: Sequence[Mapping], width: int, height: int, to_name: str) -> List[PromptRegion]:
    """One prompt per rectangle and per positive keypoint of an annotation or prediction."""
    out: List[PromptRegion] = []
    for it in prompt_items(items, to_name):
        if it.get("is_positive", True) is False:
            continue
        try:
            prompt, _ = region_geometry(it, width, height)
        except RegionError:
            continue
        out.append(PromptRegion(prompt, to_name, next(iter(region_labels(it)), None)))
    return out


def prompt_source(task: Mapping) -> Tuple[List[Mapping], str]:
    """Prompt regions (rectangles, keypoints) of the task's newest annotation that has any, else
    of another model's prediction (never ovsam's own); and where they came from."""
    anns = [a for a in (task.get("annotations") or []) if isinstance(a, Mapping) and not a.get("was_cancelled")]
    anns.sort(key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""), reverse=True)
    preds = [p for p in (task.get("predictions") or []) if isinstance(p, Mapping)
             and not str(p.get("model_version", "")).startswith("ovsam-")]
    for r, where in [(a, f"annotation {a.get('id')}") for a in anns] + [
            (p, f"prediction {p.get('id')} ({p.get('model_version')})") for p in preds]:
        if prompt_items(r.get("result")):
            return prompt_items(r.get("result")), where
    return [], ""


# ------------------------------------------------------------------------------------- masks
def polygon_mask(points_pct: Sequence[Sequence[float]], width: int, height: int) -> np.ndarray:
    """(H, W) bool of a polygon given in percent (:func:`ovsam_core.polygon_to_mask`: pixel centres
    inside); polygons written by :mod:`.outputs` rasterise back to exactly their pixels. ``ValueError``
    names a bad point."""
    return polygon_to_mask(relative_to_pixels(points_pct, width, height, 100, "polygon"), height, width)


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
    the region has one) is where its appearance is read. A rectangle gives its axis-aligned pixel
    box (a rotated one: its bounds), a keypoint its (positive) point moved into the image; a bad
    value raises :class:`RegionError` (the core's ``ValueError`` names it)."""
    kind = region_kind(item)
    value = item.get("value") or {}
    try:
        if kind == "rectangle":
            return Prompt.from_box(*relative_box_bounds(value, width, height, scale=100)), None
        if kind == "keypoint":
            ((x, y),) = relative_to_pixels([(value.get("x"), value.get("y"))], width, height, 100, "keypoint")
            return Prompt.from_points([clip_point(x, y, width, height)]), None
        if kind not in ("polygon", "brush"):
            return None, None
        points = value.get("points") or []
        mask = polygon_mask(points, width, height) if kind == "polygon" else brush_mask(value, width, height)
    except ValueError as e:
        raise RegionError(str(e)) from None
    prompt = mask_prompt(mask)
    return (prompt, mask) if prompt is not None else (None, None)
