"""The ovsam layers of a napari viewer: made for an image, kept on top of it, showing previews;
and what the core reads from napari layers (:func:`source_from_layers`, :func:`prompts_from_layers`).

Names: ``ovsam objects`` (committed objects, a Labels layer), ``ovsam preview`` (the current
mask), ``ovsam region`` (the embedded region of a large image), ``ovsam boxes`` and ``ovsam
points`` (the prompts). They share the image layer's scale and translate, and always sit above
the image they prompt, in that order (points on top), so clicks and previews stay visible.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ovsam_core import ChunkedLabels, ImageChannel, ImageSource, PromptSet, pyramid

POSITIVE, NEGATIVE = "positive", "negative"

POINTS, BOXES, PREVIEW, OBJECTS, REGION = "ovsam points", "ovsam boxes", "ovsam preview", "ovsam objects", "ovsam region"
#: bottom to top
STACK = (OBJECTS, PREVIEW, REGION, BOXES, POINTS)


def get(viewer, name: str):
    return viewer.layers[name] if name in viewer.layers else None


def _transform(img, ndim: int) -> dict:
    return {"scale": tuple(img.scale)[-ndim:], "translate": tuple(img.translate)[-ndim:]}


def reusable_labels(viewer, shape) -> Optional[Any]:
    """The data of an ``ovsam objects`` layer of this shape (its objects are kept), else None;
    an objects layer of another shape is renamed ``ovsam objects (previous)``."""
    from napari.layers import Labels

    existing = get(viewer, OBJECTS)
    if existing is not None and isinstance(existing, Labels) and tuple(existing.data.shape) == tuple(shape):
        return existing.data[0] if existing.multiscale else existing.data
    if existing is not None:
        existing.name = f"{OBJECTS} (previous)"
    return None


def add_objects(viewer, data, img, ndim: int):
    """A new ``ovsam objects`` layer showing ``data``; returns what the layer shows (write into it)."""
    tf = _transform(img, ndim)
    if isinstance(data, ChunkedLabels):
        layer = viewer.add_labels(pyramid(data), name=OBJECTS, multiscale=True, **tf)
        return layer.data[0]
    return viewer.add_labels(data, name=OBJECTS, **tf).data  # napari may wrap numpy data


def ensure_prompt_layers(viewer, img, ndim: int, height: int, width: int) -> None:
    """Make the preview, region, boxes and points layers (reused when their ndim fits)."""
    tf = _transform(img, ndim)
    for name in (POINTS, BOXES, PREVIEW, REGION):
        old = get(viewer, name)
        if old is not None and old.ndim != ndim:
            viewer.layers.remove(old)
    if get(viewer, PREVIEW) is None:
        viewer.add_labels(np.zeros((1,) * ndim, np.uint8), name=PREVIEW, opacity=0.6, **tf)
    if get(viewer, REGION) is None:
        viewer.add_shapes(None, ndim=ndim, name=REGION, edge_color="cyan", face_color="transparent",
                          edge_width=max(2.0, max(height, width) / 400), visible=False, **tf)
    if get(viewer, BOXES) is None:
        viewer.add_shapes(None, ndim=ndim, name=BOXES, edge_color="yellow", face_color="transparent",
                          edge_width=max(1.0, max(height, width) / 300), **tf)
    if get(viewer, POINTS) is None:
        viewer.add_points(np.empty((0, ndim)), name=POINTS, ndim=ndim, features={"label": np.array([], dtype=object)},
                          feature_defaults={"label": POSITIVE}, face_color="label",
                          face_color_cycle={POSITIVE: "lime", NEGATIVE: "red"}, border_color="black",
                          size=max(6.0, round(min(height, width) / 60)), **tf)
    for name in (PREVIEW, REGION, BOXES, POINTS):  # a reused layer takes the new image's placement
        layer = get(viewer, name)
        layer.scale, layer.translate = tf["scale"], tf["translate"]
    raise_to_top(viewer)


def raise_to_top(viewer) -> None:
    """Move the ovsam layers above every other layer, in :data:`STACK` order."""
    for name in STACK:
        layer = get(viewer, name)
        if layer is not None:
            viewer.layers.move(viewer.layers.index(layer), len(viewer.layers))


def show_preview(viewer, img, ndim: int, pv, roi_mode: bool) -> None:
    """Draw a :class:`~.controller.Preview` (or clear with None) in the preview and region layers."""
    layer, region = get(viewer, PREVIEW), get(viewer, REGION)
    if layer is None:
        return
    if pv is None or pv.area == 0:
        layer.data = np.zeros((1,) * ndim, np.uint8)
        if region is not None:
            region.visible = False
        return
    scale = np.asarray(img.scale, dtype=float)[-ndim:]
    base = np.asarray(img.translate, dtype=float)[-ndim:]
    # the mask is at the resolution the region was read at: one pixel = step x step plane pixels
    lead, step = len(pv.plane), pv.step
    offset = np.array(list(pv.plane) + [pv.y0 + (step - 1) / 2, pv.x0 + (step - 1) / 2], dtype=float)
    layer.data = pv.mask.astype(np.uint8).reshape((1,) * lead + pv.mask.shape)
    layer.scale = tuple(scale * np.array([1.0] * lead + [step, step]))
    layer.translate = tuple(base + scale * offset)
    if region is not None:
        r, pl = pv.region, list(pv.plane)
        ya, yb, xa, xb = r.y0 - 0.5, r.y1 - 0.5, r.x0 - 0.5, r.x1 - 0.5
        region.data = [np.array([pl + [ya, xa], pl + [ya, xb], pl + [yb, xb], pl + [yb, xa]], float)]
        region.shape_type = ["rectangle"]
        region.visible = roi_mode


def source_from_layers(layers: Sequence[Any]) -> ImageSource:
    """The core's :class:`ImageSource` of napari Image layers (level 0 first, contrast limits, RGB-ness)."""
    chans = [ImageChannel(list(ly.data) if getattr(ly, "multiscale", False) else [ly.data], tuple(ly.contrast_limits),
                          bool(getattr(ly, "rgb", False)), str(ly.name)) for ly in layers]
    return ImageSource(chans, chans[0].name if chans else None)


def _label_value(v) -> int:
    if isinstance(v, str):
        return 0 if v.strip().lower() in (NEGATIVE, "neg", "0", "false") else 1
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    return 0 if v in (0, 0.0) else 1


def prompts_from_layers(points_layer, shapes_layer, plane: Sequence[int], label_column: str = "label") -> PromptSet:
    """The prompt of the current object from a Points layer (with a ``label`` feature,
    ``positive`` / ``negative``) and a Shapes layer (its last rectangle), on ``plane``.

    Both layers must share the image's data coordinates (same scale and translate). Shapes
    other than rectangles are ignored. Duck-typed: napari is not imported.
    """
    plane = tuple(int(p) for p in plane)
    n = len(plane)
    points: List[Tuple[float, float, int]] = []
    if points_layer is not None and len(points_layer.data):
        data = np.asarray(points_layer.data, dtype=float)
        feats = getattr(points_layer, "features", None)
        labels = list(feats[label_column]) if feats is not None and label_column in feats else [POSITIVE] * len(data)
        for row, lab in zip(data, labels):
            lead, (r, c) = row[:-2], row[-2:]
            if len(lead) >= n and tuple(int(round(v)) for v in lead[len(lead) - n:]) == plane:
                points.append((float(r), float(c), _label_value(lab)))
    box = None
    if shapes_layer is not None and len(shapes_layer.data):
        types = list(getattr(shapes_layer, "shape_type", ["rectangle"] * len(shapes_layer.data)))
        for verts, kind in zip(shapes_layer.data, types):
            if kind != "rectangle":
                continue
            v = np.asarray(verts, dtype=float)
            lead = v[0, :-2]
            if len(lead) >= n and tuple(int(round(x)) for x in lead[len(lead) - n:]) != plane:
                continue
            rows, cols = v[:, -2], v[:, -1]
            if rows.max() - rows.min() < 1e-6 or cols.max() - cols.min() < 1e-6:
                continue
            box = (float(rows.min()), float(cols.min()), float(rows.max()), float(cols.max()))
    return PromptSet(plane, tuple(points), box)
