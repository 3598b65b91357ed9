"""ovsam in napari: a dock widget that turns clicks and boxes into masks with class names.

* :mod:`.widget` - the dock widget (magicgui; declared in ``napari.yaml``, npe2 manifest ``ovsam``);
* :mod:`.controller` - the logic, Qt-free: prompts, regions of interest for large images,
  commits, undo (tested without a viewer);
* :mod:`.labels_store` - label volumes that are never dense (chunks allocated on write);
* :mod:`.export` - label TIFF, CSV class table and COCO JSON;
* :mod:`.sample_data` - File > Open Sample > ovsam;
* :mod:`.cli` - ``ovsam napari``.

Nothing here is imported by ``ovsam_core``; napari, Qt and torch are only imported when the
widget or the command is used. Install with ``pip install "ovsam[napari]" pyqt6`` (see README.md).
"""
