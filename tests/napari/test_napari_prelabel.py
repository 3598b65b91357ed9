"""Pre-labelling with no prompts in napari: "Segment all" and "Find: [text]" in the dock widget of a
real viewer (under Xvfb), with the trained ``ovsam-shapes`` on ``examples/scene.png`` (COCO ground
truth ``examples/scene.json``; 4 objects, base classes only).

What napari holds afterwards is read back and scored: the ``ovsam objects`` Labels layer's data
(one id per instance) and its ``features`` (class, score, generating point) are decoded into
instances and matched against the ground truth (``match_objects``: IoU >= 0.5 and the right
class). Also: Find with one class finds only that class; Cancel mid-run leaves the layer as it
was; one undo restores the layer as it was before the run; a slice of a stack is labelled on its
own; the Qt thread keeps running (a QTimer keeps firing) while the model works; a screenshot of
the viewer after "Segment all" is saved in the test's tmp_path (path printed;
``OVSAM_TEST_ARTIFACTS=DIR`` keeps a copy).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from _gui import napari  # noqa: E402,F401  (skips without napari, Qt, pytest-qt or an X server)

from ovsam_core.evaluation.auto import match_objects  # noqa: E402
from ovsam_core.evaluation.metrics import mask_iou  # noqa: E402
from ovsam_core.geometry import center_point  # noqa: E402

from test_napari_semantic import BASE, SCENE, TRUTH, WIDGET  # noqa: E402

RUN_TIMEOUT_MS = 300_000


def _widget(viewer, image: np.ndarray, name: str = "scene"):
    viewer.add_image(image, name=name, rgb=True)
    _, w = viewer.window.add_plugin_dock_widget("ovsam", WIDGET)
    w.set_options(model="ovsam-shapes", device="cpu", precision="fp32", vocabulary=BASE, top_k=3)
    w.start_button.native.click()
    return w


def _scene() -> np.ndarray:
    from PIL import Image

    with Image.open(SCENE) as im:
        return np.asarray(im.convert("RGB"))


def _instances(data: np.ndarray, features) -> List[Tuple[int, str, float, np.ndarray]]:
    """(label id, class, score, mask) of every object in a Labels layer's data + features."""
    f = {k: list(np.asarray(features[k])) for k in ("index", "class_name", "score")}
    return [(int(i), str(c), float(s), data == i) for i, c, s in zip(f["index"], f["class_name"], f["score"])]


def score(data: np.ndarray, features, truth: Dict[str, np.ndarray]) -> Tuple[float, float]:
    """(recall, precision) at IoU 0.5 with the right class of the layer's instances."""
    inst = _instances(data, features)
    assert sorted(int(v) for v in np.unique(data) if v) == sorted(i for i, *_ in inst), "ids without a features row"
    m = match_objects([x[3] for x in inst], [x[1] for x in inst], [x[2] for x in inst],
                      list(truth.values()), list(truth.keys()))
    return float(m["gt_found"].mean()), float(m["tp"].sum() / max(len(inst), 1))


def _run(qtbot, w, start) -> float:
    """Start a run, wait for it with the Qt event loop running; returns its seconds."""
    t0 = time.monotonic()
    start()
    assert w.busy, w.status.value
    qtbot.waitUntil(lambda: not w.busy, timeout=RUN_TIMEOUT_MS)
    return time.monotonic() - t0


def test_score_fails_on_wrong_classes_or_masks():
    """The scorer is able to fail: a wrong name or a displaced mask is no match."""
    data = np.zeros(TRUTH["red circle"].shape, np.int32)
    for i, name in enumerate(TRUTH, 1):
        data[TRUTH[name]] = i
    right = {"index": np.arange(1, 5), "class_name": np.array(list(TRUTH), object), "score": np.ones(4)}
    assert score(data, right, TRUTH) == (1.0, 1.0)
    wrong = dict(right, class_name=np.array(list(TRUTH)[::-1], object))
    assert score(data, wrong, TRUTH) == (0.0, 0.0)
    assert score(np.roll(data, 40, axis=1), right, TRUTH)[0] < 0.9


def test_segment_all_names_every_object_in_one_undo_step(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.window.resize(1200, 760)
    w = _widget(viewer, _scene())
    layer = w.objects_layer

    # one object clicked and committed first: the run must keep it, and its undo must not touch it
    x, y = center_point(TRUTH["red circle"])
    w.points_layer.add([y, x])
    w.wait(300)
    w.commit_object()
    before, feats_before = np.array(layer.data, copy=True), {k: list(v) for k, v in layer.features.items()}
    assert int(before.max()) == 1

    ticks: List[float] = []
    timer = _ticker(ticks)
    seconds = _run(qtbot, w, w.segment_all_button.native.click)
    timer.stop()
    data = np.asarray(layer.data)
    names = [ly.name for ly in viewer.layers]
    assert names.count("ovsam objects") == 1 and sum(isinstance(ly, napari.layers.Labels) for ly in viewer.layers) == 2, names

    # the Qt thread was not blocked: the click returned while the worker ran (``_run`` asserts
    # ``busy`` right after it) and a 20 ms timer kept firing through the run
    gaps = np.diff(ticks)
    print(f"run {seconds:.2f} s; timer fired {len(ticks)} times, longest gap {gaps.max():.3f} s")
    assert len(ticks) >= 3 and gaps.max() < max(1.0, seconds / 3)

    recall, precision = score(data, layer.features, TRUTH)
    print(f"Segment all: {len(layer.features['index'])} instances, recall {recall:.2f}, precision {precision:.2f}")
    assert recall >= 0.9 and precision >= 0.85, (recall, precision, list(layer.features["class_name"]))
    assert np.array_equal(data == 1, before == 1), "the committed object was painted over"

    # class, score and the generating point of each pre-labelled object are in the features table
    f = layer.features
    auto = f[f["choice"] == "everything"]
    assert len(auto) >= 3 and (auto["score"] > 0.5).all()
    for _, row in auto.iterrows():
        ys, xs = np.nonzero(data == row["index"])
        assert xs.min() - 2 <= row["point_x"] <= xs.max() + 3 and ys.min() - 2 <= row["point_y"] <= ys.max() + 3, row

    shot = tmp_path / "napari_segment_all.png"
    viewer.screenshot(path=str(shot), canvas_only=False)
    _check_picture(shot)
    print(f"screenshot: {shot}")
    if os.environ.get("OVSAM_TEST_ARTIFACTS"):
        Path(os.environ["OVSAM_TEST_ARTIFACTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["OVSAM_TEST_ARTIFACTS"]) / shot.name)

    # ONE undo takes the whole run back, and only the run
    w.prompt_buttons.undo_button.native.click()
    assert np.array_equal(np.asarray(layer.data), before)
    assert {k: list(v) for k, v in layer.features.items()} == feats_before


def test_segment_all_on_held_out_scenes(make_napari_viewer, qtbot, tmp_path):
    """Pooled over held-out synthetic scenes (never trained on): the same figures."""
    import json

    from PIL import Image

    from ovsam_core.synthetic import generate_split
    from ovsam_core.training.data import decode_segmentation

    split = generate_split(tmp_path, "val", 10, 1000, classes=BASE)
    doc = json.loads(Path(split["annotations"]).read_text())
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("ovsam", WIDGET)
    w.set_options(model="ovsam-shapes", device="cpu", precision="fp32", vocabulary=BASE)
    found = n_gt = tp = n_pred = 0
    for im in doc["images"]:
        viewer.layers.clear()
        rgb = np.asarray(Image.open(Path(split["images"]) / im["file_name"]).convert("RGB"))
        w.image_layers.value = [viewer.add_image(rgb, name=im["file_name"], rgb=True)]
        w.start_button.native.click()
        _run(qtbot, w, w.segment_all_button.native.click)
        gt = [(cats[a["category_id"]], decode_segmentation(a["segmentation"], im["height"], im["width"]))
              for a in doc["annotations"] if a["image_id"] == im["id"]]
        inst = _instances(np.asarray(w.objects_layer.data), w.objects_layer.features)
        m = match_objects([x[3] for x in inst], [x[1] for x in inst], [x[2] for x in inst],
                          [g[1] for g in gt], [g[0] for g in gt])
        found, n_gt, tp, n_pred = found + m["gt_found"].sum(), n_gt + len(gt), tp + m["tp"].sum(), n_pred + len(inst)
    recall, precision = found / n_gt, tp / max(n_pred, 1)
    print(f"held-out scenes: {n_gt} objects, {n_pred} instances, recall {recall:.2f}, precision {precision:.2f}")
    assert n_gt >= 20 and recall >= 0.9 and precision >= 0.85, (recall, precision)


def test_find_one_class_finds_only_it(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    w = _widget(viewer, _scene())
    w.find_text.value = "green square"
    _run(qtbot, w, w.find_button.native.click)
    layer = w.objects_layer
    names = list(layer.features["class_name"])
    print("Find green square:", names, w.status.value)
    assert names and set(names) == {"green square"}, names
    assert set(layer.features["choice"]) == {"find"}
    data = np.asarray(layer.data)
    recall, precision = score(data, layer.features, {"green square": TRUTH["green square"]})
    assert recall == 1.0 and precision >= 0.85, (recall, precision)


def test_cancel_mid_run_leaves_the_labels_as_they_were(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    img = _scene()
    old = np.zeros(img.shape[:2], np.int32)
    old[5:25, 5:40] = 7      # an objects layer that existed before: its pixels must survive
    viewer.add_labels(old.copy(), name="ovsam objects")
    w = _widget(viewer, img)
    layer = w.objects_layer
    before = np.array(layer.data, copy=True)
    assert np.array_equal(before, old)

    w.set_options(auto_points=64)   # 4,096 grid points: many decode steps to cancel between
    w.segment_all_button.native.click()
    steps = w._steps
    assert w.busy and w.cancel_button.enabled
    qtbot.waitUntil(lambda: steps.done > 0, timeout=RUN_TIMEOUT_MS)
    from napari.utils import progress

    bars = [p for p in list(progress._instances) if "segment all" in (p.desc or "")]
    qtbot.waitUntil(lambda: bars[0].total == 4096, timeout=5000)   # napari's progress bar shows the grid points
    assert len(bars) == 1
    w.cancel_button.native.click()
    qtbot.waitUntil(lambda: not w.busy, timeout=RUN_TIMEOUT_MS)
    print(w.status.value)
    print(f"cancelled after {steps.done} of {steps.total} grid points")
    assert "cancelled" in w.status.value and not w.cancel_button.enabled and steps.done < steps.total
    assert np.array_equal(np.asarray(layer.data), before)
    assert len(layer.features) == 0 and not w.controller.objects and not w.controller.can_undo

    # Cancel pressed after the model finished but before its objects were written: still nothing
    w.set_options(auto_points=16)
    w.segment_all_button.native.click()
    w._jobs._running[0][0].result(timeout=RUN_TIMEOUT_MS / 1000)   # the worker is done; Qt has not seen it yet
    w.cancel_button.native.click()
    qtbot.waitUntil(lambda: not w.busy, timeout=RUN_TIMEOUT_MS)
    assert "cancelled" in w.status.value and np.array_equal(np.asarray(layer.data), before)


def test_a_stack_slice_is_labelled_on_its_own(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    img = _scene()
    stack = np.stack([np.full_like(img, 255), img[:, ::-1]])   # slice 1: the scene mirrored
    w = _widget(viewer, stack, "stack")
    viewer.dims.set_current_step(0, 1)
    w.find_text.value = "red circle, yellow star"
    _run(qtbot, w, w.find_button.native.click)
    layer = w.objects_layer
    data = np.asarray(layer.data)
    assert data.shape == stack.shape[:3] and not data[0].any()
    truth = {n: TRUTH[n][:, ::-1] for n in ("red circle", "yellow star")}
    recall, precision = score(data[1], layer.features, truth)
    print(f"slice 1: {list(layer.features['class_name'])}, recall {recall:.2f}, precision {precision:.2f}")
    assert recall == 1.0 and precision >= 0.85
    assert set(layer.features["plane"]) == {"1"}
    for name, mask in truth.items():   # the mirrored scene, not the original, was labelled
        assert mask_iou(mask, TRUTH[name]) < 0.5


def test_large_image_labels_the_visible_area(make_napari_viewer, qtbot):
    """A 3000 x 4000 image (region of interest mode): the visible area around the scene is labelled,
    objects land at their place in the whole image, nothing outside the region is touched."""
    img = _scene()
    big = np.empty((3000, 4000, 3), np.uint8)
    big[...] = np.median(img.reshape(-1, 3), axis=0).astype(np.uint8)
    oy, ox = 1700, 2300
    big[oy:oy + img.shape[0], ox:ox + img.shape[1]] = img
    viewer = make_napari_viewer()
    viewer.window.resize(1200, 760)
    w = _widget(viewer, big, "big")
    w.set_options(roi_size=512)
    assert w.controller.region_mode() == "roi"
    camera = getattr(viewer, "scene", viewer).camera
    camera.center = (oy + img.shape[0] / 2, ox + img.shape[1] / 2)
    camera.zoom = 1.5
    _run(qtbot, w, w.segment_all_button.native.click)
    data = np.asarray(w.objects_layer.data)
    region = w.controller.auto_region((), w._visible_area())
    print(f"region {region}, status {w.status.value}")
    assert region.height < 1200 and region.step == 1
    assert region.y0 <= oy and region.x0 <= ox and region.y1 >= oy + img.shape[0] and region.x1 >= ox + img.shape[1]
    outside = data.copy()
    outside[region.y0:region.y1, region.x0:region.x1] = 0
    assert not outside.any()
    local = data[oy:oy + img.shape[0], ox:ox + img.shape[1]]
    recall, precision = score(local, w.objects_layer.features, TRUTH)
    print(f"visible area of a 3000 x 4000 image: recall {recall:.2f}, precision {precision:.2f}")
    assert recall >= 0.9 and precision >= 0.85, (recall, precision, list(w.objects_layer.features["class_name"]))


def test_readme_segment_all_command_names_all_four_shapes(monkeypatch, make_napari_viewer, qtbot):
    """The main README's "Segment all" command, run as written (the model's own vocabulary)."""
    import re
    import shlex

    from ovsam_core.cli import main

    repo = SCENE.parents[1]
    section = (repo / "README.md").read_text()
    section = section[section.index("### napari\n"):section.index("\n## ", section.index("### napari\n"))]
    assert "**Segment all**" in section
    (cmd,) = re.findall(r"`(ovsam napari [^`]*)`", section)
    monkeypatch.chdir(repo)
    monkeypatch.setattr(napari, "run", lambda *a, **k: None)
    made = []
    monkeypatch.setattr(napari, "Viewer", lambda **kw: made.append(make_napari_viewer(**kw)) or made[-1])
    assert main(shlex.split(cmd)[1:] + ["--device", "cpu"]) == 0
    w = made[0].window.dock_widgets[f"{WIDGET} (ovsam)"]
    _run(qtbot, w, w.segment_all_button.native.click)
    recall, precision = score(np.asarray(w.objects_layer.data), w.objects_layer.features, TRUTH)
    print(f"README command: {list(w.objects_layer.features['class_name'])}, recall {recall:.2f}, precision {precision:.2f}")
    assert recall == 1.0 and precision == 1.0


def _ticker(ticks: List[float]):
    from qtpy.QtCore import QTimer

    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    return timer


def _check_picture(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.shape[0] >= 300 and rgb.shape[1] >= 400
    assert len(np.unique(rgb.reshape(-1, 3)[::7], axis=0)) > 50 and rgb.std() > 10, "the screenshot looks blank"
