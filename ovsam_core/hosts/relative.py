"""Relative coordinates as hosts store them, and the pixels of the image they belong to.

FiftyOne (and other dataset tools) keep a box as ``[x, y, w, h]``: fractions of the image's
width and height (x right, y down, top-left corner first), points as ``[x, y]`` fractions, and an
instance mask **cropped to its box** (its own resolution, stretched over the box). This module
turns those into the core's pixel frame (original-image pixels, boxes ``(x0, y0, x1, y1)`` with
exclusive end) and back: prompts from relative boxes/points, full-size masks from a box + crop,
the IoU of two such detections, and the box a host shows for a prompt's result.

Other hosts store the same geometry in **percent** (Label Studio: ``x``/``width`` in percent of the
image's width, ``y``/``height`` of its height, a rectangle's ``rotation`` in degrees clockwise
about its top-left corner): the functions with a ``scale`` take ``scale=100`` for those
(1: fractions). Values read from a host's JSON are checked (:func:`finite_number`).
"""
from __future__ import annotations

import math
from typing import Any, Hashable, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..masks import crop_iou, resize_nearest
from ..prompts import Prompt, PromptError
from .hostprompts import rotated_box_bounds

RelBox = Sequence[float]   # [x, y, w, h], fractions of the image


def relative_box_pixels(box: RelBox, width: int, height: int) -> Tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixels of a relative ``[x, y, w, h]`` box (rounded; at least 1 pixel)."""
    x, y, bw, bh = (float(v) for v in box)
    x0, y0 = int(round(x * width)), int(round(y * height))
    return x0, y0, max(int(round((x + bw) * width)), x0 + 1), max(int(round((y + bh) * height)), y0 + 1)


def pixels_to_relative(x0: float, y0: float, x1: float, y1: float, width: int, height: int, scale: float = 1.0,
                       ndigits: Optional[int] = None) -> Tuple[float, ...]:
    """Relative ``[x, y, w, h]`` of a pixel box (x0, y0, x1, y1), times ``scale`` (100: percent),
    rounded to ``ndigits`` when given."""
    out = (x0 * scale / width, y0 * scale / height, (x1 - x0) * scale / width, (y1 - y0) * scale / height)
    return out if ndigits is None else tuple(round(v, ndigits) for v in out)


def finite_number(v: Any, what: str) -> float:
    """``float(v)``; ``ValueError`` naming ``what`` when ``v`` is not a number or not finite."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is not a number: {v!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{what} is not finite: {v!r}")
    return f


def relative_to_pixels(points: Iterable[Sequence[Any]], width: int, height: int, scale: float = 1.0,
                       what: str = "point") -> List[Tuple[float, float]]:
    """Pixel (x, y) of relative points (``scale`` 100: percent); each coordinate must be a finite
    number (``ValueError`` names ``what`` and the axis, e.g. ``polygon x is not a number``)."""
    return [(finite_number(p[0], f"{what} x") * width / scale, finite_number(p[1], f"{what} y") * height / scale)
            for p in points]


def pixels_to_relative_points(points: Iterable[Sequence[float]], width: int, height: int, scale: float = 1.0,
                              ndigits: Optional[int] = None) -> List[List[float]]:
    """Relative ``[x, y]`` of pixel points (the inverse of :func:`relative_to_pixels`), rounded to ``ndigits``."""
    out = [[float(x) * scale / width, float(y) * scale / height] for x, y in points]
    return out if ndigits is None else [[round(x, ndigits), round(y, ndigits)] for x, y in out]


def relative_box_bounds(box: Mapping[str, Any], width: int, height: int, scale: float = 1.0,
                        what: str = "rectangle") -> Tuple[float, float, float, float]:
    """Axis-aligned pixel (x0, y0, x1, y1) of a relative box ``{"x", "y", "width", "height",
    "rotation"?}`` (top-left corner, size; degrees clockwise about that corner), as
    :func:`~ovsam_core.rotated_box_bounds`; ``ValueError`` names a value that is not a finite number."""
    def num(key: str, size: int) -> float:
        return finite_number(box.get(key), f"{what} {key}") * size / scale

    return rotated_box_bounds(num("x", width), num("y", height), num("width", width), num("height", height),
                              finite_number(box.get("rotation", 0) or 0, f"{what} rotation"))


def crop_in_pixels(box: RelBox, crop: Optional[np.ndarray], width: int, height: int) -> Tuple[int, int, np.ndarray]:
    """(x0, y0, mask) of a box + cropped mask: the crop resized (nearest) to the box's pixel
    size; no crop: the box filled."""
    x0, y0, x1, y1 = relative_box_pixels(box, width, height)
    if crop is None:
        return x0, y0, np.ones((y1 - y0, x1 - x0), bool)
    return x0, y0, resize_nearest(np.asarray(crop), y1 - y0, x1 - x0)


def relative_mask(box: RelBox, crop: Optional[np.ndarray], width: int, height: int) -> np.ndarray:
    """(height, width) bool: a box + cropped mask pasted into the whole image (clipped to it)."""
    x0, y0, m = crop_in_pixels(box, crop, width, height)
    out = np.zeros((height, width), bool)
    xa, ya = max(x0, 0), max(y0, 0)
    xb, yb = min(x0 + m.shape[1], width), min(y0 + m.shape[0], height)
    if xb > xa and yb > ya:
        out[ya:yb, xa:xb] = m[ya - y0:yb - y0, xa - x0:xb - x0] > 0
    return out


def relative_iou(a_box: RelBox, a_crop, b_box: RelBox, b_crop, width: int, height: int) -> float:
    """Pixel IoU of two box + cropped-mask detections in a ``width`` x ``height`` image."""
    ax, ay, am = crop_in_pixels(a_box, a_crop, width, height)
    bx, by, bm = crop_in_pixels(b_box, b_crop, width, height)
    return crop_iou(am, (ay, ax), bm, (by, bx))


def paired_ious(predictions: Iterable[Tuple[Hashable, RelBox, Any]], truths: Mapping[Hashable, Tuple[RelBox, Any]],
                width: int, height: int) -> List[float]:
    """IoU of each prediction ``(truth id, box, crop)`` with the ground truth ``truths[id] = (box,
    crop)`` it was prompted by (:func:`relative_iou`); predictions without that truth are left out."""
    return [relative_iou(box, crop, *truths[key], width, height) for key, box, crop in predictions if key in truths]


def prompt_from_relative(width: int, height: int, box: Optional[RelBox] = None,
                         points: Optional[Iterable[Sequence[Optional[float]]]] = None,
                         labels: Optional[Sequence[int]] = None) -> Prompt:
    """A validated pixel :class:`Prompt` from a relative box or relative points (``labels``: 1
    positive, 0 negative, default positive). Missing points (None/NaN) are left out.

    Raises:
        PromptError: no box and no usable point, a malformed box, or a prompt outside the image.
    """
    if box is not None:
        if len(box) != 4:
            raise PromptError("no bounding box")
        x, y, bw, bh = (float(v) for v in box)
        p = Prompt.from_box(x * width, y * height, (x + bw) * width, (y + bh) * height)
    else:
        pts = list(points or [])
        labs = list(labels) if labels is not None else [1] * len(pts)
        if len(labs) != len(pts):
            raise PromptError(f"{len(pts)} points but {len(labs)} point labels")
        keep = [(px * width, py * height, int(lab)) for (px, py), lab in zip(pts, labs)
                if px is not None and py is not None and math.isfinite(px) and math.isfinite(py)]
        if not keep:
            raise PromptError("no points")
        p = Prompt.from_points(keep)
    return p.validated(height, width)


def prompt_result_box(prompt: Prompt, mask_box: Optional[Sequence[int]], width: int,
                      height: int) -> Tuple[int, int, int, int]:
    """The pixel box to show for a prompt's result: the mask's tight box, else (empty mask) the
    prompt's box (rounded outwards), else one pixel at its first positive point; in the image."""
    if mask_box is not None:
        return tuple(int(v) for v in mask_box)  # type: ignore[return-value]
    if prompt.box is not None:
        x0, y0 = int(math.floor(prompt.box[0])), int(math.floor(prompt.box[1]))
        x1, y1 = int(math.ceil(prompt.box[2])), int(math.ceil(prompt.box[3]))
    else:
        px, py = next(pt for pt, lab in zip(prompt.points, prompt.labels) if lab == 1)
        x0, y0 = int(px), int(py)
        x1, y1 = x0 + 1, y0 + 1
    x0, y0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
    return x0, y0, min(max(x1, x0 + 1), width), min(max(y1, y0 + 1), height)
