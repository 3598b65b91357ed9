"""The ovsam dock widget: a thin magicgui layer over the core's :class:`ovsam_core.Annotator`.

Everything that is not "read a control / a layer" or "update a control / a layer" lives in the
core (the layers in :mod:`.layers`). Model work (loading, embedding, decoding, export)
runs in one background thread (:mod:`.jobs`) with a napari progress bar; layers are only touched
on the Qt main thread.

Layout for small screens (:mod:`.controls`): image and prompt controls first, closable settings,
all in a scroll area; status texts wrap.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from ._torch_guard import guard_triton

guard_triton()  # before anything imports torch (see _torch_guard)

from magicgui.widgets import Container  # noqa: E402

from ovsam_core import Annotator, AnnotatorSettings, PromptSet  # noqa: E402

from . import layers as L  # noqa: E402
from .layers import NEGATIVE, POSITIVE, prompts_from_layers, source_from_layers  # noqa: E402
from .actions import ActionsMixin  # noqa: E402
from .controls import DEFAULT_VOCAB, VOCABS, SectionsMixin  # noqa: E402
from .jobs import Jobs  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    import napari

POINTS, BOXES, PREVIEW, OBJECTS, REGION = L.POINTS, L.BOXES, L.PREVIEW, L.OBJECTS, L.REGION
#: Keys bound on the ovsam prompt layers only (free in napari's Points/Shapes/viewer keymaps).
KEYS = {"c": "commit", "u": "undo last commit", "Shift-C": "clear prompts", "n": "toggle negative points",
        "k": "next top-k class"}


class OVSAMWidget(SectionsMixin, ActionsMixin, Container):
    """Point and box prompts -> mask + class name (from a large vocabulary) -> Labels layer.

    **Start** makes the layers of :mod:`.layers` (committed objects' class, score and top-k in
    the ``ovsam objects`` layer's ``features``); keys on the prompt layers: :data:`KEYS`.
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:
        super().__init__(labels=False)  # napari docks ``native``: the scroll area must be inside it
        self.viewer = napari_viewer
        self.controller = Annotator(AnnotatorSettings())
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
        self.segment_all_button.changed.connect(lambda *_: self._guard(self.segment_all))
        self.find_button.changed.connect(lambda *_: self._guard(lambda: self.segment_all(self.find_text.value)))
        self.cancel_button.changed.connect(lambda *_: self.cancel())
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

    # the ovsam layers of the viewer (None until Start)
    points_layer = property(lambda self: L.get(self.viewer, POINTS))
    boxes_layer = property(lambda self: L.get(self.viewer, BOXES))
    objects_layer = property(lambda self: L.get(self.viewer, OBJECTS))
    preview_layer = property(lambda self: L.get(self.viewer, PREVIEW))

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
        recs = self.controller.undo()
        if not recs:
            self.status.value = "nothing to undo"
            return
        self._refresh_objects()
        self.status.value = "undid " + (f"#{recs[0].label_id} ({recs[0].class_name})" if len(recs) == 1
                                        else f"{len(recs)} pre-labelled objects")

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

    def close(self) -> None:  # magicgui Widget.close
        self._jobs.shutdown()
        super().close()
