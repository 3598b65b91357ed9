"""ovsam in napari: a dock widget that turns clicks and boxes into masks with class names.

* :mod:`.widget` - the dock widget (magicgui; declared in ``napari.yaml``, npe2 manifest ``ovsam``);
* :mod:`.layers` - the ovsam layers, and what the core reads from napari layers;
* :mod:`.controls` / :mod:`.jobs` - the widget's sections, its worker thread and progress bar;
* the logic is the core's (``ovsam_core.Annotator``: prompts, regions of interest, commits,
  undo, pre-labelling, export; ``ChunkedLabels`` for large label volumes);
* :mod:`.sample_data` - File > Open Sample > ovsam;
* :mod:`.cli` - ``ovsam napari``.

Nothing here is imported by ``ovsam_core``; napari, Qt and torch are only imported when the
widget or the command is used. Install with ``pip install "ovsam[napari]" pyqt6`` (see README.md).
"""
