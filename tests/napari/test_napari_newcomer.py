"""What a new napari user hit (issue 13), with a real viewer under Xvfb: the process aborting
after ``viewer.close()``, a dock too tall for a laptop screen, long status texts widening the
dock, and prompt layers hidden below a second image."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from _gui import napari  # noqa: E402,F401  (skips without napari, Qt, pytest-qt or an X server)

WIDGET = "Open-Vocabulary SAM"
SMALL_SCREEN = 768


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OVSAM_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env=env)


def test_script_exits_cleanly_after_viewer_close(tmp_path):
    """The reported abort (exit 134, "wrapped C/C++ object of type QTimer has been deleted"):
    at exit Python may delete the widget's poll timer before Qt destroys the widget. The
    script deletes the timer first, as that teardown order does, then closes the viewer."""
    out = _run("""
        import napari
        from qtpy import sip
        v = napari.Viewer()
        v.open_sample("ovsam", "shapes")
        _, w = v.window.add_plugin_dock_widget("ovsam", "Open-Vocabulary SAM")
        sip.delete(w._jobs._timer)
        v.close()
        print("closed")
    """, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("closed") and "Traceback" not in out.stderr

    out = _run("""
        import napari
        v = napari.Viewer()
        v.open_sample("ovsam", "shapes")
        v.window.add_plugin_dock_widget("ovsam", "Open-Vocabulary SAM")
        v.close()
    """, tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-3000:]


def _dock(viewer):
    from qtpy.QtWidgets import QApplication

    viewer.open_sample("ovsam", "shapes")
    dock, w = viewer.window.add_plugin_dock_widget("ovsam", WIDGET)
    QApplication.processEvents()
    return dock, w


def test_dock_fits_a_768px_screen_and_status_wraps(make_napari_viewer):
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    dock, w = _dock(viewer)
    qt_window = viewer.window._qt_window
    h_dock, h_window = dock.minimumSizeHint().height(), qt_window.minimumSizeHint().height()
    print(f"dock minimum height {h_dock} px, window minimum height {h_window} px")
    assert h_window <= SMALL_SCREEN - 60, (h_dock, h_window)  # room for a panel / title bar
    # the prompt controls come first, above every settings section
    y = {name: getattr(w, name).native.mapTo(w.native, getattr(w, name).native.rect().topLeft()).y()
         for name in ("start_button", "commit_button", "model", "export_button")}
    assert y["start_button"] < y["commit_button"]
    assert not w.model.native.isVisible() and not w.export_button.native.isVisible()  # closed sections
    # every section open: the dock scrolls instead of growing past the screen
    for name in ("Model and vocabulary", "Large images", "Embeddings", "Export"):
        w.open_section(name)
    QApplication.processEvents()
    assert w.model.native.isVisible() and w.export_button.native.isVisible()
    assert qt_window.minimumSizeHint().height() <= SMALL_SCREEN - 60
    viewer.window.resize(1200, 700)
    QApplication.processEvents()
    assert qt_window.height() <= 700

    # a long status text wraps: the dock keeps its width and the buttons stay inside it
    width = dock.minimumSizeHint().width()
    w.status.value = "error: " + "a rather long explanation of what went wrong " * 8
    QApplication.processEvents()
    assert dock.minimumSizeHint().width() <= width
    btn = w.clear_button.native
    right = btn.mapTo(dock, btn.rect().topRight()).x()
    assert right <= dock.width(), (right, dock.width())


def test_prompt_layers_stay_on_top_of_a_second_image(make_napari_viewer):
    viewer = make_napari_viewer()
    dock, w = _dock(viewer)
    w.set_options(model="ovsam-test", device="cpu", vocabulary=["a", "b"])
    w.start_session()
    second = viewer.add_image(np.zeros((120, 160), np.uint8), name="second")
    w.image_layers.value = [second]
    w.start_session()
    names = [layer.name for layer in viewer.layers]
    top = names[names.index("second") + 1:]
    assert top[-2:] == ["ovsam boxes", "ovsam points"], names
    for n in ("ovsam objects", "ovsam preview", "ovsam region"):
        assert n in top, names
    assert tuple(viewer.layers["ovsam points"].scale) == tuple(second.scale)


def test_mistyped_vocabulary_file_is_an_error(make_napari_viewer):
    viewer = make_napari_viewer()
    dock, w = _dock(viewer)
    from ovsam_core import VocabularyError

    with pytest.raises(VocabularyError, match="vocabulary file not found"):
        w.set_options(model="ovsam-test", vocabulary="/nonexistent/my_vocab.txt")


def test_main_readme_command_gives_a_named_mask(monkeypatch, make_napari_viewer):
    """The main README's napari command, run as written from the repository folder (only the
    model is swapped for the tiny ``ovsam-test``): a click gives a mask and a name, ``c`` commits it."""
    import re
    import shlex
    from pathlib import Path

    from app_model.types import KeyBinding

    from ovsam_core.cli import main

    repo = Path(__file__).resolve().parents[2]
    text = (repo / "README.md").read_text()
    section = text[text.index("### napari\n"):]
    (line,) = [ln for ln in section.splitlines() if ln.startswith("ovsam napari ")][:1]
    argv = shlex.split(line)[1:]
    argv[argv.index("--model") + 1] = "ovsam-test"
    monkeypatch.chdir(repo)
    monkeypatch.setattr(napari, "run", lambda *a, **k: None)
    made = []
    monkeypatch.setattr(napari, "Viewer", lambda **kw: made.append(make_napari_viewer(**kw)) or made[-1])
    assert main(argv + ["--device", "cpu"]) == 0
    (viewer,) = made
    w = viewer.window.dock_widgets[f"{WIDGET} (ovsam)"]
    pts = viewer.layers["ovsam points"]
    assert [layer.name for layer in viewer.layers][-1] == "ovsam points"
    pts.add([151, 130])  # the red disc of examples/shapes.png (row, col)
    w.wait()
    pv = w.controller.preview
    assert pv is not None and pv.area > 0 and pv.label and re.match(re.escape(pv.label), w.result.value)
    pts.keymap[KeyBinding.from_str("c")](pts)
    assert list(viewer.layers["ovsam objects"].features["class_name"]) == [pv.label]
