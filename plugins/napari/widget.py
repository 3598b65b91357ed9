"""The ovsam dock widget: a thin magicgui layer over :class:`~.controller.Controller`.

Everything that is not "read a control / a layer" or "update a control / a layer" lives in the
controller (and the layers in :mod:`.layers`). Model work (loading, embedding, decoding, export)
runs in one background thread (:mod:`.jobs`) with a napari progress bar; layers are only touched
on the Qt main thread.

Layout for small screens: the image and prompt controls come first; the settings (model, large
images, embeddings, export) are sections that open on a click, all inside a scroll area, so the
dock fits a 768 px screen; status texts wrap instead of widening the dock.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional

import numpy as np

from ._torch_guard import guard_triton

guard_triton()  # before anything imports torch (see _torch_guard)

from magicgui.widgets import (CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, PushButton,  # noqa: E402
                              Select, SpinBox)

from . import layers as L  # noqa: E402
from .controller import NEGATIVE, POSITIVE, Controller, PromptSet, Settings, prompts_from_layers, source_from_layers  # noqa: E402
from .jobs import Jobs  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    import napari

POINTS, BOXES, PREVIEW, OBJECTS, REGION = L.POINTS, L.BOXES, L.PREVIEW, L.OBJECTS, L.REGION
DEFAULT_VOCAB = "model default"
VOCABS = (DEFAULT_VOCAB, "coco", "lvis", "imagenet21k", "custom list", "file")
INTENSITY_CHOICES = (("contrast limits", "contrast"), ("auto (as ovsam embed)", "auto"))
#: Keys bound on the ovsam prompt layers only (free in napari's Points/Shapes/viewer keymaps).
KEYS = {"c": "commit", "u": "undo last commit", "Shift-C": "clear prompts", "n": "toggle negative points",
        "k": "next top-k class"}


def _model_choices() -> List[str]:
    from ovsam_core import list_models

    return list(list_models())


def _wrapping(label: Label) -> Label:
    """A label whose long text wraps inside the dock instead of widening it."""
    from qtpy.QtWidgets import QSizePolicy

    label.native.setWordWrap(True)
    label.native.setMinimumWidth(0)
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label


class OVSAMWidget(Container):
    """Point and box prompts -> mask + class name (from a large vocabulary) -> Labels layer.

    Layers made by **Start**: ``ovsam points`` (positive/negative points, feature ``label``),
    ``ovsam boxes`` (rectangles), ``ovsam preview`` (the current mask), ``ovsam region`` (the
    part of a large image that is embedded) and ``ovsam objects`` (committed objects; their
    class, score and top-k are in the layer's ``features``). Keys on the prompt layers: ``c``
    commit, ``u`` undo, ``Shift-C`` clear prompts, ``n`` toggle negative points, ``k`` next
    top-k class.
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:
        super().__init__(labels=False)  # napari docks ``native``: the scroll area must be inside it
        self.viewer = napari_viewer
        self.controller = Controller(Settings())
        self._jobs = Jobs(parent=self.native)
        self._image_layer = None
        self._pending: Optional[PromptSet] = None
        self._shown: Optional[PromptSet] = None
        self._muted = False
        self._sections = {}
        self._body = Container(labels=False)
        self._build(self._make_controls())
        self._scroll_body()
        self.native.destroyed.connect(self._jobs.shutdown)
        self._connect()
        self._sync_visibility()
        self._apply_settings()

    # ------------------------------------------------------------------ controls
    def _make_controls(self) -> list:
        """Sections of (title, open?, widgets); each control is also an attribute of the widget."""
        models = _model_choices()
        return [
            ("Image", True, [
                Select(name="image_layers", label="image layer(s)", choices=self._image_choices,
                       tooltip="one grey or RGB layer, or 2-3 grey layers shown as R, G, B"),
                PushButton(name="start_button", text="Start (make prompt layers)")]),
            ("Prompt  (keys on the prompt layers: c, u, n, k, Shift-C)", True, [
                CheckBox(name="negative", label="negative points (n)", value=False),
                _wrapping(Label(name="result", value="no object yet")),
                ComboBox(name="class_choice", label="class (top-k)", choices=[]),
                LineEdit(name="class_text", label="or type a class", value=""),
                Container(name="prompt_buttons", label=" ", layout="horizontal", labels=False, widgets=[
                    PushButton(name="commit_button", text="Commit (c)"),
                    PushButton(name="undo_button", text="Undo (u)"),
                    PushButton(name="clear_button", text="Clear (Shift-C)")]),
                _wrapping(Label(name="status", value=""))]),
            ("Model and vocabulary", False, [
                ComboBox(name="model", label="model", choices=models,
                         value="ovsam-lvis" if "ovsam-lvis" in models else models[0]),
                ComboBox(name="device", label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto"),
                ComboBox(name="precision", label="precision", choices=["fp32", "bf16", "fp16"], value="fp32"),
                ComboBox(name="vocabulary", label="vocabulary", choices=list(VOCABS), value=DEFAULT_VOCAB),
                LineEdit(name="vocab_list", label="classes", value="",
                         tooltip="class names separated by commas, synonyms joined by |, e.g. nucleus, mitochondrion|mito"),
                FileEdit(name="vocab_file", label="vocab file", mode="r", filter="*.txt *.json *.yaml *.yml"),
                ComboBox(name="recognition", label="recognition", choices=["model default", "head", "fused"],
                         value="model default"),
                SpinBox(name="top_k", label="top-k", value=5, min=1, max=20)]),
            ("Large images", False, [
                ComboBox(name="region", label="region", choices=["auto", "whole", "roi"], value="auto",
                         tooltip="auto: the whole plane up to 2048 px a side, else a region of interest "
                                 "around the prompt"),
                SpinBox(name="roi_size", label="ROI size", value=1024, min=256, max=8192, step=128),
                ComboBox(name="intensity", label="intensity", choices=list(INTENSITY_CHOICES), value="contrast"),
                CheckBox(name="paint_over", label="paint over committed objects", value=False)]),
            ("Embeddings", False, [
                FileEdit(name="embeddings_dir", label="folder", mode="d",
                         tooltip="embeddings written by `ovsam embed --out DIR`; new ones are saved there"),
                FileEdit(name="embedding_file", label="file", mode="w", filter="*.safetensors"),
                Container(name="emb_buttons", label=" ", layout="horizontal", labels=False, widgets=[
                    PushButton(name="embed_now", text="Embed now"),
                    PushButton(name="save_embedding", text="Save"),
                    PushButton(name="load_embedding", text="Load")])]),
            ("Export", False, [
                FileEdit(name="export_dir", label="folder", mode="d"),
                PushButton(name="export_button", text="Export labels + CSV + COCO")]),
        ]

    def _build(self, sections) -> None:
        for title, is_open, widgets in sections:
            body = Container(widgets=widgets, labels=True)
            head = PushButton(text=title)
            head.native.setCheckable(True)
            head.native.setStyleSheet("text-align: left; font-weight: bold")
            head.native.toggled.connect(lambda on, b=body, h=head, t=title: self._open(b, h, t, on))
            self._body.extend([head, body])
            self._sections[title.split("  ")[0]] = head
            head.native.setChecked(is_open)
            self._open(body, head, title, is_open)
            for w in widgets:
                object.__setattr__(self, w.name, w)
                if isinstance(w, Container):
                    for inner in w:
                        object.__setattr__(self, inner.name, inner)
        self.image_layers.native.setMaximumHeight(90)

    def _scroll_body(self) -> None:
        """The sections in a vertical scroll area: the dock can be shorter than its contents."""
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QAbstractScrollArea, QFrame, QScrollArea

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents)
        scroll.setWidget(self._body.native)
        scroll.setMinimumWidth(self._body.native.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        scroll.setMinimumHeight(min(300, self._body.native.minimumSizeHint().height()))  # prompts stay in view
        self.native.layout().setContentsMargins(0, 0, 0, 0)
        self.native.layout().addWidget(scroll)

    @staticmethod
    def _open(body, head, title: str, on: bool) -> None:
        body.visible = on
        head.text = ("\u25be " if on else "\u25b8 ") + title

    def open_section(self, name: str, is_open: bool = True) -> None:
        """Open (or close) a settings section by its title's first words, e.g. ``"Export"``."""
        self._sections[name].native.setChecked(is_open)

    def _connect(self) -> None:
        for name in ("model", "device", "precision", "vocabulary", "vocab_list", "vocab_file", "recognition",
                     "top_k", "region", "roi_size", "intensity", "paint_over", "embeddings_dir"):
            getattr(self, name).changed.connect(self._on_settings_changed)
        self.start_button.changed.connect(lambda *_: self._guard(self.start_session))
        self.emb_buttons.embed_now.changed.connect(lambda *_: self._guard(self.embed_now_clicked))
        self.emb_buttons.save_embedding.changed.connect(lambda *_: self._guard(self.save_embedding_clicked))
        self.emb_buttons.load_embedding.changed.connect(lambda *_: self._guard(self.load_embedding_clicked))
        self.negative.changed.connect(self._on_negative)
        self.prompt_buttons.commit_button.changed.connect(lambda *_: self._guard(self.commit_object))
        self.prompt_buttons.undo_button.changed.connect(lambda *_: self._guard(self.undo_commit))
        self.prompt_buttons.clear_button.changed.connect(lambda *_: self._guard(self.clear_prompts))
        self.export_button.changed.connect(lambda *_: self._guard(self.export_clicked))
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self.viewer.dims.events.current_step.connect(self._on_prompts_changed)

    def _image_choices(self, *_):
        from napari.layers import Image

        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def _on_layers_changed(self, *_):
        self.image_layers.reset_choices()

    def _sync_visibility(self) -> None:
        v = self.vocabulary.value
        self.vocab_list.visible = v == "custom list"
        self.vocab_file.visible = v == "file"
        self.roi_size.visible = self.region.value != "whole"

    # ------------------------------------------------------------------ settings
    def set_options(self, **values) -> None:
        """Set controls by name, e.g. ``set_options(model="ovsam-test", vocabulary=["cat", "dog"])``.

        ``vocabulary`` also takes a list of names (-> custom list) or a path (-> file).
        """
        for name, value in values.items():
            if value is None:
                continue
            if name == "vocabulary" and not (isinstance(value, str) and value in VOCABS):
                if isinstance(value, (list, tuple)):
                    from ovsam_core import vocabulary_to_text

                    self.vocab_list.value = vocabulary_to_text(value)
                    value = "custom list"
                else:
                    self.vocab_file.value = str(value)
                    value = "file"
            widget = getattr(self, name, None)
            if widget is None:
                raise ValueError(f"unknown option {name!r}")
            widget.value = value
        self._apply_settings()

    def _vocabulary(self):
        from ovsam_core import parse_vocabulary_text

        v = self.vocabulary.value
        if v == DEFAULT_VOCAB:
            return None
        if v == "custom list":
            return parse_vocabulary_text(self.vocab_list.value)
        if v == "file":
            p = self.vocab_file.value
            return parse_vocabulary_text(str(p)) if p and str(p) not in ("", ".") else None
        return v

    def _apply_settings(self) -> None:
        emb_dir = self.embeddings_dir.value
        emb_dir = str(emb_dir) if emb_dir and str(emb_dir) not in ("", ".") and Path(emb_dir).is_dir() else None
        rec = self.recognition.value
        self.controller.configure(
            model=self.model.value, device=self.device.value, dtype=self.precision.value,
            vocabulary=self._vocabulary(), mode=None if rec == "model default" else rec, top_k=int(self.top_k.value),
            region=self.region.value, roi_size=int(self.roi_size.value), intensity=self.intensity.value,
            paint_over=bool(self.paint_over.value), embeddings_dir=emb_dir)

    def _on_settings_changed(self, *_):
        self._sync_visibility()
        self._guard(self._apply_settings)
        self._shown = None
        self._on_prompts_changed()

    # ------------------------------------------------------------------ helpers
    def _guard(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - shown to the user
            self._error(e)
            return None

    def _error(self, err: BaseException) -> None:
        from napari.utils.notifications import show_warning

        msg = str(err) or type(err).__name__
        self.status.value = f"error: {msg}"
        show_warning(f"ovsam: {msg}")

    def _layer(self, name: str):
        return L.get(self.viewer, name)

    @property
    def points_layer(self):
        return self._layer(POINTS)

    @property
    def boxes_layer(self):
        return self._layer(BOXES)

    @property
    def objects_layer(self):
        return self._layer(OBJECTS)

    @property
    def preview_layer(self):
        return self._layer(PREVIEW)

    def wait(self, timeout: float = 120.0) -> None:
        """Wait for background work (model loading, embedding, export) and apply its results."""
        self._jobs.wait(timeout)

    @property
    def busy(self) -> bool:
        return self._jobs.busy

    # ------------------------------------------------------------------ session
    def _selected_layers(self):
        chosen = list(self.image_layers.value or [])
        if not chosen:
            choices = self._image_choices()
            if not choices:
                raise ValueError("add an image layer first (or File > Open Sample > ovsam)")
            chosen = [choices[0][1]]
        return chosen

    def start_session(self) -> None:
        """Make (or reuse) the prompt, preview and objects layers for the chosen image layer(s),
        above the image they prompt."""
        self._apply_settings()
        chosen = self._selected_layers()
        source = source_from_layers(chosen)
        img = chosen[0]
        self._image_layer = img
        ndim = len(source.shape)
        labels = L.reusable_labels(self.viewer, source.shape)
        self.controller.set_image(source, labels)
        if labels is None:
            self.controller.labels = L.add_objects(self.viewer, self.controller.labels, img, ndim)
        self.objects_layer.features = self.controller.features()
        L.ensure_prompt_layers(self.viewer, img, ndim, source.height, source.width)
        for layer in (self.points_layer, self.boxes_layer):
            self._bind_keys(layer)
            layer.events.data.disconnect(self._on_prompts_changed)
            layer.events.data.connect(self._on_prompts_changed)
        self._on_negative()
        self.boxes_layer.mode = "add_rectangle"
        self.points_layer.mode = "add"
        self.viewer.layers.selection.active = self.points_layer
        mode = self.controller.region_mode()
        self.status.value = (f"{source.name}: {source.width}x{source.height}"
                             + (f", {len(source.lead_shape)} stack axes" if source.lead_shape else "")
                             + f"; {'whole plane' if mode == 'whole' else 'region of interest'} mode")
        self._show_preview(None)

    def _bind_keys(self, layer) -> None:
        actions = {"c": self.commit_object, "u": self.undo_commit, "Shift-C": self.clear_prompts,
                   "n": lambda: setattr(self.negative, "value", not self.negative.value),
                   "k": self.next_class}
        for key, fn in actions.items():
            layer.bind_key(key, lambda _layer, fn=fn: self._guard(fn), overwrite=True)

    def _current_plane(self) -> tuple:
        src = self.controller.source
        if src is None or not src.lead_shape:
            return ()
        pos = np.asarray(self._image_layer.world_to_data(self.viewer.dims.point), dtype=float)
        lead = pos[:len(src.lead_shape)]
        return tuple(int(min(max(round(v), 0), s - 1)) for v, s in zip(lead, src.lead_shape))

    def current_prompts(self) -> PromptSet:
        return prompts_from_layers(self.points_layer, self.boxes_layer, self._current_plane())

    # ------------------------------------------------------------------ prompts -> preview
    def _on_negative(self, *_):
        layer = self.points_layer
        if layer is not None:
            layer.feature_defaults = {"label": NEGATIVE if self.negative.value else POSITIVE}

    def _on_prompts_changed(self, *_):
        if self._muted or self.controller.source is None or self.points_layer is None:
            return
        try:
            ps = self.current_prompts()
        except Exception as e:  # noqa: BLE001
            self._error(e)
            return
        if ps == self._shown and self.controller.preview is not None:
            return
        if ps.is_empty():
            self.controller.clear_preview()
            self._shown = ps
            self._show_preview(None)
            return
        self._pending = ps
        if not self._jobs.busy:
            self._run_pending()

    def _run_pending(self) -> None:
        ps, self._pending = self._pending, None
        if ps is None:
            return
        first = not self.controller.model_loaded
        desc = "ovsam: loading model and segmenting" if first else "ovsam: segmenting"

        def done(pv):
            self._shown = ps
            if self._pending is None:
                self._show_preview(pv)
            else:
                self._run_pending()

        def failed(err):
            self._error(err)
            self._show_preview(None)
            if self._pending is not None:
                self._run_pending()

        self._jobs.submit(lambda: self.controller.predict(ps), done, failed, desc)

    def _show_preview(self, pv) -> None:
        src = self.controller.source
        if self.preview_layer is None or src is None:
            return
        self._muted = True
        try:
            L.show_preview(self.viewer, self._image_layer, len(src.shape), pv, self.controller.region_mode() == "roi")
        finally:
            self._muted = False
        if pv is None or pv.area == 0:
            self.result.value = "no object yet" if pv is None else "empty mask: move the point or the box"
            self.class_choice.choices = []
            return
        names = [n for n, _ in pv.top_k]
        self.class_choice.choices = names
        self.class_choice.value = names[0]
        self.result.value = pv.summary()

    # ------------------------------------------------------------------ commit / undo / clear
    def commit_object(self) -> None:
        """Commit the preview with the chosen class (typed, else the selected top-k entry)."""
        if self._jobs.busy:
            self.wait()
        name = self.class_text.value.strip() or (self.class_choice.value or None)
        rec = self.controller.commit(name)
        self._refresh_objects()
        self.class_text.value = ""
        self.clear_prompts()
        self.status.value = f"committed #{rec.label_id}: {rec.class_name}"

    def undo_commit(self) -> None:
        rec = self.controller.undo()
        if rec is None:
            self.status.value = "nothing to undo"
            return
        self._refresh_objects()
        self.status.value = f"undid #{rec.label_id} ({rec.class_name})"

    def clear_prompts(self) -> None:
        self._muted = True
        try:
            if self.points_layer is not None:
                self.points_layer.data = np.empty((0, self.points_layer.ndim))
            if self.boxes_layer is not None:
                self.boxes_layer.data = []
        finally:
            self._muted = False
        self._pending = None
        self._shown = None
        self.controller.clear_preview()
        self._show_preview(None)

    def next_class(self) -> None:
        choices = list(self.class_choice.choices)
        if choices:
            i = choices.index(self.class_choice.value) if self.class_choice.value in choices else -1
            self.class_choice.value = choices[(i + 1) % len(choices)]

    def _refresh_objects(self) -> None:
        layer = self.objects_layer
        layer.features = self.controller.features()
        layer.refresh()

    # ------------------------------------------------------------------ embeddings and export
    def embed_now_clicked(self) -> None:
        plane = self._current_plane()
        self._jobs.submit(lambda: self.controller.embed_plane(plane),
                          lambda _: setattr(self.status, "value", "embedding ready"), self._error, "ovsam: embedding")

    def _embedding_path(self) -> Path:
        p = self.embedding_file.value
        if not p or str(p) in ("", "."):
            raise ValueError("choose an embedding file (.safetensors) first")
        return Path(p)

    def save_embedding_clicked(self) -> None:
        path, plane = self._embedding_path(), self._current_plane()
        self._jobs.submit(lambda: self.controller.save_embedding(path, plane),
                          lambda p: setattr(self.status, "value", f"saved {p}"), self._error, "ovsam: saving embedding")

    def load_embedding_clicked(self) -> None:
        path, plane = self._embedding_path(), self._current_plane()

        def done(_):
            s = self.controller.settings
            self._muted = True
            try:
                self.intensity.value, self.region.value = s.intensity, s.region
            finally:
                self._muted = False
            self.status.value = f"loaded {path.name}"

        self._jobs.submit(lambda: self.controller.load_embedding(path, plane), done, self._error,
                          "ovsam: loading embedding")

    def export_clicked(self) -> None:
        out = self.export_dir.value
        if not out or str(out) in ("", "."):
            raise ValueError("choose an export folder first")
        self._jobs.submit(lambda: self.controller.export(out),
                          lambda paths: setattr(self.status, "value", "wrote " + ", ".join(p.name for p in paths.values())),
                          self._error, "ovsam: exporting")

    def close(self) -> None:  # magicgui Widget.close
        self._jobs.shutdown()
        super().close()
