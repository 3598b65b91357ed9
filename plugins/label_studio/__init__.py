"""Label Studio ML backend for ovsam: clicks/boxes -> masks with labels from the project's label set.

Run it with ``ovsam label-studio serve``, or build the WSGI app yourself (``create_app``): see
``plugins/label_studio/README.md``. Importing this package imports neither Flask nor label-studio-sdk
(``pip install "ovsam[label-studio]"`` brings them); only ``ovsam_core``'s public API is used.
"""
from __future__ import annotations

import importlib

__all__ = ["Backend", "BackendError", "Settings", "create_app", "settings_from_env"]
_MODULE = {"Backend": "backend", "BackendError": "backend", "create_app": "app", "Settings": "settings",
           "settings_from_env": "settings"}


def __getattr__(name: str):
    if name not in _MODULE:
        raise AttributeError(name)
    return getattr(importlib.import_module(f".{_MODULE[name]}", __name__), name)
