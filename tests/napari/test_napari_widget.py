"""The dock widget in a real napari viewer, loaded through the npe2 manifest.

Runs under a real X server: pytest-xvfb starts Xvfb (Qt's offscreen platform cannot draw napari
layers). Skipped when napari, a Qt binding, pytest-qt or an X server are missing; set up with
``.ci/setup-napari.sh``. ``OVSAM_TEST_ARTIFACTS=DIR`` keeps the screenshots.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from _gui import napari  # noqa: E402,F401  (skips without napari, Qt, pytest-qt or an X server)
pytest.importorskip("npe2")

from app_model.types import KeyBinding  # noqa: E402

from ovsam_core import ChunkedLabels  # noqa: E402
from ovsam_plugins.napari.widget import KEYS, OVSAMWidget  # noqa: E402

VOCAB = ["cell", "nucleus", "square", "disc", "triangle", "sky"]
WIDGET = "Open-Vocabulary SAM"


def _widget(viewer) -> OVSAMWidget:
    _, w = viewer.window.add_plugin_dock_widget("ovsam", WIDGET)
    assert isinstance(w, OVSAMWidget)
    w.set_options(model="ovsam-test", device="cpu", vocabulary=VOCAB, top_k=3)
    return w


def _press(layer, key: str) -> None:
    """Run what a key press on the layer runs (the layer's own keymap)."""
    layer.keymap[KeyBinding.from_str(key)](layer)


def _keep(path: Path) -> None:
    out = os.environ.get("OVSAM_TEST_ARTIFACTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(out) / path.name)


def _check_picture(path: Path, min_size=(400, 300)) -> None:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.shape[1] >= min_size[0] and rgb.shape[0] >= min_size[1]
    colours = np.unique(rgb.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 50 and rgb.std() > 10, "the screenshot looks blank"


def _segment(w, add) -> None:
    """Add a prompt and wait until the preview shows a non-empty mask."""
    add()
    w.wait()
    assert w.controller.preview is not None, w.status.value


def test_manifest_declares_the_widget_and_samples():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    mf = pm.get_manifest("ovsam")
    assert mf.name == "ovsam"
    assert [wd.display_name for wd in mf.contributions.widgets] == [WIDGET]
    assert {s.key for s in mf.contributions.sample_data} == {"cells", "shapes", "large"}
    for cmd in mf.contributions.commands:  # every python_name resolves
        mod, _, attr = cmd.python_name.partition(":")
        assert callable(getattr(__import__(mod, fromlist=[attr]), attr))


def test_points_and_box_commit_named_objects_undo_and_screenshot(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.window.resize(1400, 950)
    viewer.open_sample("ovsam", "shapes")
    w = _widget(viewer)
    w.start_button.native.click()
    names = [layer.name for layer in viewer.layers]
    for n in ("ovsam points", "ovsam boxes", "ovsam preview", "ovsam objects"):
        assert n in names
    pts, boxes, objects = (viewer.layers[n] for n in ("ovsam points", "ovsam boxes", "ovsam objects"))
    assert viewer.layers.selection.active.name == "ovsam points" and pts.mode == "add"

    # keys are bound to the prompt layers only, and none is a shortcut of napari's viewer or of
    # its Points/Shapes layers (other layer types' keys, e.g. Image's "C", are not active here)
    from napari.layers import Image, Labels, Surface, Tracks, Vectors
    from napari.settings import get_settings
    from napari.utils.action_manager import action_manager

    other = (Image, Labels, Surface, Tracks, Vectors)
    taken = set()
    for action, keys in get_settings().shortcuts.shortcuts.items():
        provider = getattr(action_manager._actions.get(action), "keymapprovider", None)
        if not (isinstance(provider, type) and issubclass(provider, other)):
            taken |= {str(k) for k in keys}
    assert "P" in taken and "R" in taken  # Points' add mode, Shapes' rectangle mode
    for key in KEYS:
        kb = KeyBinding.from_str(key)
        assert kb in pts.keymap and kb in boxes.keymap and str(kb) not in taken, key
        assert kb not in type(pts).class_keymap and kb not in type(boxes).class_keymap

    # 1. a positive point -> preview with a name and top-k -> commit with the key "c"
    _segment(w, lambda: pts.add([140, 120]))
    pv = w.controller.preview
    assert pv.label in VOCAB and w.result.value.startswith(pv.label)
    assert list(w.class_choice.choices) == [n for n, _ in pv.top_k]
    assert np.asarray(w.preview_layer.data).sum() == pv.area
    _press(pts, "c")
    feats = objects.features
    assert list(feats["index"]) == [1] and feats["class_name"][0] == pv.label and feats["choice"][0] == "suggested"
    assert int((np.asarray(objects.data) == 1).sum()) == pv.area
    assert len(pts.data) == 0 and w.controller.preview is None

    # 2. a box + a negative point ("n") -> pick the second top-k class ("k") -> commit button
    _segment(w, lambda: boxes.add_rectangles(np.array([[170, 220], [330, 380]])))
    _press(pts, "n")
    assert pts.feature_defaults["label"][0] == "negative"
    _segment(w, lambda: pts.add([60, 60]))
    assert w.controller.preview.prompts.points == ((60.0, 60.0, 0),) and w.controller.preview.prompts.box
    _press(boxes, "k")
    picked = w.class_choice.value
    assert picked == w.controller.preview.top_k[1][0]
    w.prompt_buttons.commit_button.native.click()
    feats = objects.features
    assert list(feats["index"]) == [1, 2] and feats["class_name"][1] == picked and feats["choice"][1] == "top-k"
    assert (np.asarray(objects.data) == 2).any()

    # 3. undo (button) and a typed class
    w.prompt_buttons.undo_button.native.click()
    assert list(objects.features["index"]) == [1] and not (np.asarray(objects.data) == 2).any()
    _press(pts, "n")
    _segment(w, lambda: boxes.add_rectangles(np.array([[80, 60], [200, 180]])))
    w.class_text.value = "red square"
    _press(boxes, "c")
    assert objects.features["class_name"].tolist()[-1] == "red square"
    _press(pts, "u")
    _press(pts, "Shift-C")
    assert len(objects.features) == 1 and len(boxes.data) == 0

    # 4. export through the widget
    w.export_dir.value = str(tmp_path / "export")
    w.export_button.native.click()
    w.wait()
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == [
        "shapes_classes.csv", "shapes_coco.json", "shapes_labels.tif"]

    # 5. a screenshot of the viewer with the widget: a readable, non-blank picture
    _segment(w, lambda: pts.add([250, 300]))
    shot = tmp_path / "ovsam_napari_widget.png"
    viewer.screenshot(path=str(shot), canvas_only=False)
    _keep(shot)
    _check_picture(shot, (700, 500))


def test_two_channels_and_a_stack_slice(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("ovsam", "cells")
    w = _widget(viewer)
    w.image_layers.value = [viewer.layers["nuclei"], viewer.layers["membranes"]]
    w.start_session()
    assert len(w.controller.source.channels) == 2
    assert w.controller.source.channels[1].contrast_limits == tuple(viewer.layers["membranes"].contrast_limits)
    _segment(w, lambda: w.points_layer.add([200, 200]))
    if w.controller.preview.area:
        w.commit_object()
        assert len(w.objects_layer.features) == 1
    # a 3-D stack: prompts and commits happen on the current slice only
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    stack = np.stack([np.roll(viewer_img(), 25 * i, axis=1) for i in range(3)])
    viewer.add_image(stack, name="stack", contrast_limits=(0, 9000))
    viewer.dims.set_current_step(0, 1)
    w.image_layers.value = [viewer.layers["stack"]]
    w.start_session()
    assert w.objects_layer.data.shape == (3, 200, 260)
    for pos in ([1, 100, 110], [1, 150, 200], [1, 40, 40]):
        _segment(w, lambda pos=pos: w.points_layer.add(pos))
        if w.controller.preview.area:
            break
        w.clear_prompts()
    assert w.controller.preview.plane == (1,)
    w.commit_object()
    data = np.asarray(w.objects_layer.data)
    assert data[1].any() and not data[0].any() and not data[2].any()


def viewer_img() -> np.ndarray:
    img = np.full((200, 260), 300, np.uint16)
    yy, xx = np.mgrid[:200, :260]
    img[(yy - 100) ** 2 + (xx - 110) ** 2 < 35 ** 2] = 8000
    return img


def test_large_lazy_image_prompts_in_a_region_of_interest(make_napari_viewer, tmp_path, qtbot):
    viewer = make_napari_viewer(show=True)  # hidden canvases draw multiscale layers at the wrong level
    viewer.window.resize(1300, 900)
    viewer.open_sample("ovsam", "large")
    image = viewer.layers["large cells"]
    assert image.multiscale and image.data.shape == (20000, 20000)
    w = _widget(viewer)
    w.start_session()
    objects = w.objects_layer
    assert objects.multiscale and isinstance(objects.data[0], ChunkedLabels)
    assert w.controller.region_mode() == "roi"
    viewer.camera.center = (12320, 15008)
    viewer.camera.zoom = 0.5
    for pos in ([12320, 15008], [12352, 14944], [12256, 15072]):
        _segment(w, lambda pos=pos: w.points_layer.add(pos))
        if w.controller.preview.area:
            break
        w.clear_prompts()
    pv = w.controller.preview
    assert pv.area and pv.region.height == 1024 and viewer.layers["ovsam region"].visible
    w.commit_object()
    labels = objects.data[0]
    rec = w.controller.objects[1]
    x0, y0, x1, y1 = rec.bbox_xyxy
    assert labels[(y0 + y1) // 2, :].shape == (20000,) and 11000 < y0 < y1 < 13700
    assert 0 < labels.allocated_bytes < 32 * 1024 ** 2 and objects.features["class_name"][0] in VOCAB
    # a big box is read every 2nd pixel (pyramid level 1); the preview is drawn at that scale
    _segment(w, lambda: w.boxes_layer.add_rectangles(np.array([[3000, 3000], [4800, 5000]])))
    pv = w.controller.preview
    preview = viewer.layers["ovsam preview"]
    assert (pv.step, pv.region.level) == (2, 1) and tuple(preview.scale) == (2.0, 2.0)
    assert np.allclose(preview.data_to_world([0, 0]), [pv.y0 + 0.5, pv.x0 + 0.5])
    assert np.asarray(preview.data).shape == pv.mask.shape
    w.clear_prompts()
    shot = tmp_path / "ovsam_napari_large.png"
    # the first draw picks the pyramid level for the camera; the next one shows it
    viewer.screenshot(canvas_only=True)
    qtbot.wait(300)
    viewer.screenshot(path=str(shot), canvas_only=True)
    _keep(shot)
    _check_picture(shot, (200, 200))


def test_cli_command_is_registered_without_importing_napari():
    code = textwrap.dedent("""
        import argparse, sys
        from importlib.metadata import entry_points
        (ep,) = [e for e in entry_points(group="ovsam.cli") if e.name == "napari"]
        assert ep.value == "ovsam_plugins.napari.cli:register", ep.value
        parser = argparse.ArgumentParser(prog="ovsam")
        ep.load()(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["napari", "img.png", "--model", "ovsam-test", "--classes", "a; b"])
        heavy = [m for m in ("napari", "qtpy", "PyQt6", "torch", "magicgui") if m in sys.modules]
        assert not heavy, heavy
        print(args.func.__module__, args.model, args.classes)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ovsam_plugins.napari.cli", "ovsam-test", "a;", "b"]


def test_cli_opens_the_viewer_with_the_widget(monkeypatch, tmp_path, qtbot):
    from PIL import Image

    from ovsam_core.cli import main

    img = tmp_path / "shapes.png"
    Image.fromarray(np.asarray(__import__("ovsam_plugins.napari.sample_data", fromlist=["shapes"]).shapes()[0][0])).save(img)
    monkeypatch.setattr(napari, "run", lambda *a, **k: None)
    assert main(["napari", str(img), "--model", "ovsam-test", "--device", "cpu", "--classes", "cat; dog"]) == 0
    viewer = napari.current_viewer()
    try:
        w = viewer.window.dock_widgets[f"{WIDGET} (ovsam)"]
        assert isinstance(w, OVSAMWidget) and w.controller.settings.model == "ovsam-test"
        assert w.controller.settings.vocabulary == ["cat", "dog"] and "ovsam points" in viewer.layers
    finally:
        viewer.close()


def test_cli_dtype_defaults_to_auto_and_a_wrong_one_is_a_clean_error(monkeypatch, tmp_path, capsys):
    """The widget offers every runtime precision and starts on ``auto`` (the fast path of this machine)."""
    from ovsam_core import PRECISION_CHOICES
    from ovsam_core.cli import main

    img = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    monkeypatch.setattr(napari, "run", lambda *a, **k: None)
    assert main(["napari", str(img), "--dtype", "fp8"]) != 0
    assert "fp8" in capsys.readouterr().err
    assert main(["napari", str(img), "--model", "ovsam-test", "--device", "cpu"]) == 0
    viewer = napari.current_viewer()
    try:
        w = viewer.window.dock_widgets[f"{WIDGET} (ovsam)"]
        assert w.precision.value == "auto" and list(w.precision.choices) == list(PRECISION_CHOICES)
        assert w.controller.settings.dtype == "auto"
    finally:
        viewer.close()


def test_widget_opened_after_the_gl_context_does_not_crash(tmp_path):
    """napari draws with GL before the plugin loads torch: see ovsam_plugins/napari/_torch_guard.py."""
    code = textwrap.dedent("""
        import numpy as np, napari
        from qtpy.QtWidgets import QApplication
        v = napari.Viewer(show=False)
        v.open_sample("ovsam", "shapes")
        QApplication.processEvents()
        _, w = v.window.add_plugin_dock_widget("ovsam", "Open-Vocabulary SAM")
        w.set_options(model="ovsam-test", device="cpu", vocabulary=["a", "b"])
        w.start_session()
        w.points_layer.add([140, 120])
        w.wait()
        print("ok", w.controller.preview is not None)
        v.close()
    """)
    env = dict(os.environ, OVSAM_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok True")
