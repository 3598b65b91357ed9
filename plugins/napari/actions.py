"""What the dock widget runs in the background: Segment all / Find (the core's pre-labelling),
embeddings to and from disk, export. Each reads the widget's controls and the viewer on the Qt
thread, runs the core call in the worker (:mod:`.jobs`) and writes the result back on the Qt
thread; Segment all / Find can be cancelled (nothing is written then) and commit as one undo step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .jobs import Steps


class ActionsMixin:
    """Background actions of :class:`~.widget.OVSAMWidget` (its controls, ``controller``,
    ``viewer`` and ``_jobs``)."""

    _steps: Optional[Steps] = None

    # ------------------------------------------------------------------ label everything / find
    def _visible_area(self):
        """(y0, x0, y1, x1) of the image plane shown on the canvas (data pixels), or None."""
        try:
            h, w = self.viewer.window._qt_viewer.canvas.size   # private in napari 0.9; fall back to the ROI size
            camera = getattr(self.viewer, "scene", self.viewer).camera
            zoom, centre = camera.zoom, np.asarray(camera.center)[-2:]
            corners = [self._image_layer.world_to_data(list(self.viewer.dims.point[:-2]) + list(centre + d))
                       for d in (np.array([-h, -w]) / zoom / 2, np.array([h, w]) / zoom / 2)]
            (y0, x0), (y1, x1) = (np.asarray(c)[-2:] for c in corners)
            return (min(y0, y1), min(x0, x1), max(y0, y1), max(x0, x1))
        except Exception:  # noqa: BLE001
            return None

    def segment_all(self, find: Optional[str] = None) -> None:
        """Pre-label the current plane (or the visible area of a large image) with no prompts:
        every object the vocabulary names, or (``find``) only the typed classes. Runs in the
        worker with a progress bar; :meth:`cancel` stops it with the labels untouched; the
        objects are committed as one undo step."""
        from ovsam_core import AutoSettings, labels_from_names, parse_vocabulary_text

        if self._jobs.busy:
            raise ValueError("ovsam is busy: wait for it or press Cancel")
        classes = None
        if find is not None:
            names = parse_vocabulary_text(find)
            if not isinstance(names, list):
                raise ValueError("type the classes to find, separated by commas (synonyms joined by |)")
            classes = labels_from_names(names)
        if self.controller.source is None:
            self.start_session()
        auto = AutoSettings(mode="find" if classes else "everything", points_per_side=int(self.auto_points.value),
                            min_score=float(self.auto_min_score.value))
        view = self._visible_area() if self.controller.region_mode() == "roi" else None
        plane, steps, book = self._current_plane(), Steps(), self.controller.book
        self._steps = steps

        def done(previews):
            if steps.cancelled.is_set() or self.controller.book is not book:   # cancelled late, or another image
                self._end_auto("cancelled: the labels are unchanged")
                return
            self._end_auto("")
            recs = self._guard(lambda: self.controller.commit_all(previews))
            self._refresh_objects()
            if recs is not None:
                self.status.value = f"{auto.mode}: {len(recs)} objects" + (" (one undo: u)" if recs else "")

        def failed(err):
            from ovsam_core import Cancelled

            if isinstance(err, Cancelled):
                self._end_auto("cancelled: the labels are unchanged")
            else:
                self._end_auto("")
                self._error(err)

        self.cancel_button.enabled = True
        self.status.value = f"{auto.mode}: running (Cancel stops it)"
        self._jobs.submit(lambda: self.controller.prelabel(auto, classes, plane, view, steps), done, failed,
                          f"ovsam: {'find' if classes else 'segment all'}", steps)

    def cancel(self) -> None:
        """Stop a running Segment all / Find at its next step (nothing is written)."""
        steps = getattr(self, "_steps", None)
        if steps is not None:
            steps.cancel()

    def _end_auto(self, status: str) -> None:
        self._steps = None
        self.cancel_button.enabled = False
        if status:
            self.status.value = status

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
