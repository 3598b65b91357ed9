"""The widget's controls: sections (image and prompt first, settings closable), in a scroll area.

napari docks a magicgui widget's ``native`` QWidget, so the scroll area is built inside it; the
dock can then be shorter than its contents (a 768 px screen) and long texts wrap.
"""
from __future__ import annotations

from typing import List, Tuple

from magicgui.widgets import (CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, LineEdit, PushButton,
                              Select, SpinBox)

DEFAULT_VOCAB = "model default"
VOCABS = (DEFAULT_VOCAB, "coco", "lvis", "imagenet21k", "custom list", "file")
INTENSITY_CHOICES = (("contrast limits", "contrast"), ("auto (as ovsam embed)", "auto"))


def _choices() -> Tuple[List[str], List[str]]:  # (registered models, image-encoder precisions)
    from ovsam_core import PRECISION_CHOICES, list_models

    return list(list_models()), list(PRECISION_CHOICES)


def _wrapping(label: Label) -> Label:
    """A label whose long text wraps inside the dock instead of widening it."""
    from qtpy.QtWidgets import QSizePolicy

    label.native.setWordWrap(True)
    label.native.setMinimumWidth(0)
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label


class SectionsMixin:
    """Builds the sections of :class:`~.widget.OVSAMWidget` (``_body``, ``_sections`` set by it)."""

    def _make_controls(self) -> list:
        """Sections of (title, open?, widgets); each control is also an attribute of the widget."""
        models, precisions = _choices()
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
            ("Label everything (no prompts)", True, [
                Container(name="auto_buttons", label=" ", layout="horizontal", labels=False, widgets=[
                    PushButton(name="segment_all_button", text="Segment all"),
                    PushButton(name="cancel_button", text="Cancel", enabled=False)]),
                Container(name="find_row", label="find", layout="horizontal", labels=False, widgets=[
                    LineEdit(name="find_text", value="", tooltip="classes to find, separated by commas, synonyms "
                                                                 "joined by |, e.g. nucleus, mitochondrion|mito"),
                    PushButton(name="find_button", text="Find")])]),
            ("Model and vocabulary", False, [
                ComboBox(name="model", label="model", choices=models,
                         value="ovsam-lvis" if "ovsam-lvis" in models else models[0]),
                ComboBox(name="device", label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto"),
                ComboBox(name="precision", label="precision", choices=precisions, value="auto"),
                ComboBox(name="vocabulary", label="vocabulary", choices=list(VOCABS), value=DEFAULT_VOCAB),
                LineEdit(name="vocab_list", label="classes", value="",
                         tooltip="class names separated by commas, synonyms joined by |, e.g. nucleus, mitochondrion|mito"),
                FileEdit(name="vocab_file", label="vocab file", mode="r", filter="*.txt *.json *.yaml *.yml"),
                ComboBox(name="recognition", label="recognition", choices=["model default", "head", "fused"],
                         value="model default"),
                SpinBox(name="top_k", label="top-k", value=5, min=1, max=20),
                SpinBox(name="auto_points", label="points/side", value=16, min=4, max=64,
                        tooltip="Segment all / Find: grid of points per side (more finds smaller objects, slower)"),
                FloatSpinBox(name="auto_min_score", label="min score", value=0.5, min=0.0, max=1.0, step=0.05)]),
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
