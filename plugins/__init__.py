"""Host adapters for ovsam (installed as ``ovsam_plugins``).

Each sub-package is a thin adapter that imports only the public API of ``ovsam_core``:
``label_studio`` (ML backend), ``fiftyone`` (model + operators) and ``napari`` (dock widget).
Their host dependencies come with the matching extra, e.g. ``pip install "ovsam[napari]"``.
"""
