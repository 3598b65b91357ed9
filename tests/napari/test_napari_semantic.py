"""napari answers are *right*: the shipped trained model ``ovsam-shapes`` in the dock widget of a
real viewer (under Xvfb, like ``test_napari_widget.py``) on ``examples/scene.png``, whose COCO
ground truth is ``examples/scene.json``.

Two objects are clicked (a point on the ``ovsam points`` layer, committed with the key ``c``) and
two are boxed (a rectangle on ``ovsam boxes``, committed with the widget's button), always with the
model's suggested class. Then what napari holds is read back: the ``ovsam objects`` Labels layer's
``features`` table must name each object with its true class (as the model's suggestion), and the
pixels of its label id in the layer's data must cover the true mask with IoU >= 0.8.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pytest

from _gui import napari  # noqa: E402,F401  (skips without napari, Qt, pytest-qt or an X server)

from app_model.types import KeyBinding  # noqa: E402

from ovsam_core.evaluation.metrics import mask_iou  # noqa: E402
from ovsam_core.geometry import center_point  # noqa: E402
from ovsam_core.training.data import decode_segmentation  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCENE = REPO / "examples" / "scene.png"
#: the base classes of ``ovsam-shapes`` (the novel ones are never named correctly: not used)
BASE = ["red circle", "green square", "blue triangle", "yellow star", "striped ring", "checkered diamond"]
MIN_IOU = 0.8
WIDGET = "Open-Vocabulary SAM"


def scene_truth() -> Dict[str, np.ndarray]:
    """{class name: (H, W) bool mask} of examples/scene.png."""
    doc = json.loads((REPO / "examples" / "scene.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    im = doc["images"][0]
    return {names[a["category_id"]]: decode_segmentation(a["segmentation"], im["height"], im["width"])
            for a in doc["annotations"]}


TRUTH = scene_truth()


def check_objects(data: np.ndarray, features, expected: Sequence[str]) -> List[str]:
    """Object ``i + 1`` of the Labels ``data`` / ``features`` is ``expected[i]``: named so (the model's
    suggestion) and covering its true mask with IoU >= 0.8. Returns one line per object."""
    feats = {k: list(np.asarray(features[k])) for k in ("index", "class_name", "suggested_class", "choice")}
    assert feats["index"] == list(range(1, len(expected) + 1)), feats["index"]
    assert sorted(int(v) for v in np.unique(data) if v) == feats["index"]
    lines = []
    for i, name in enumerate(expected):
        label_id = feats["index"][i]
        iou = mask_iou(data == label_id, TRUTH[name])
        got = feats["class_name"][i]
        assert got == name, f"object #{label_id} ({name}): named {got!r} (IoU {iou:.3f})"
        assert feats["suggested_class"][i] == name and feats["choice"][i] == "suggested", feats
        assert iou >= MIN_IOU, f"object #{label_id} ({name}): mask IoU {iou:.3f} < {MIN_IOU}"
        lines.append(f"#{label_id} {name}: IoU {iou:.3f}")
    return lines


def features_of(records: Sequence[Tuple[str, str]]) -> Dict[str, np.ndarray]:
    """A features table of (class_name, suggested_class) rows, for the checker's own test."""
    n = len(records)
    return {"index": np.arange(1, n + 1), "class_name": np.array([c for c, _ in records], object),
            "suggested_class": np.array([s for _, s in records], object), "choice": np.array(["suggested"] * n, object)}


def test_checker_fails_on_a_wrong_label_or_a_wrong_mask():
    """The assertions are able to fail: a wrong name or a displaced mask is caught."""
    right = np.zeros(TRUTH["green square"].shape, np.int32)
    right[TRUTH["green square"]] = 1
    check_objects(right, features_of([("green square", "green square")]), ["green square"])
    with pytest.raises(AssertionError, match="named 'yellow star'"):
        check_objects(right, features_of([("yellow star", "yellow star")]), ["green square"])
    shifted = np.roll(right, 25, axis=1)  # the right name a quarter of the object off
    with pytest.raises(AssertionError, match="mask IoU"):
        check_objects(shifted, features_of([("green square", "green square")]), ["green square"])


def _press(layer, key: str) -> None:
    """Run what a key press on the layer runs (the layer's own keymap)."""
    layer.keymap[KeyBinding.from_str(key)](layer)


def test_clicked_and_boxed_objects_are_named_and_outlined(make_napari_viewer):
    from PIL import Image

    from ovsam_plugins.napari.widget import OVSAMWidget

    viewer = make_napari_viewer()
    with Image.open(SCENE) as im:
        viewer.add_image(np.asarray(im.convert("RGB")), name="scene")
    _, w = viewer.window.add_plugin_dock_widget("ovsam", WIDGET)
    assert isinstance(w, OVSAMWidget)
    w.set_options(model="ovsam-shapes", device="cpu", precision="fp32", vocabulary=BASE, top_k=3)
    w.start_button.native.click()
    pts, boxes, objects = w.points_layer, w.boxes_layer, w.objects_layer

    order = []
    for name in ("red circle", "striped ring"):  # a click (row, column) at the object's centre
        x, y = center_point(TRUTH[name])
        pts.add([y, x])
        w.wait()
        assert w.controller.preview is not None and w.controller.preview.area, w.status.value
        _press(pts, "c")
        order.append(name)
    for name in ("green square", "yellow star"):  # a rectangle around the object's true extent
        ys, xs = np.nonzero(TRUTH[name])
        boxes.add_rectangles(np.array([[ys.min(), xs.min()], [ys.max(), xs.max()]]))
        w.wait()
        assert w.controller.preview is not None and w.controller.preview.area, w.status.value
        w.prompt_buttons.commit_button.native.click()
        order.append(name)
    assert len(pts.data) == 0 and len(boxes.data) == 0  # each commit cleared its prompts
    data = np.asarray(objects.data)
    assert data.shape == TRUTH["red circle"].shape
    print(check_objects(data, objects.features, order))
