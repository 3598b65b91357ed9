"""Label Studio ML backend for ovsam: clicks/boxes -> masks with labels from the project's label set.

Run it with ``ovsam label-studio serve`` (see ``plugins/label_studio/README.md``), or build the app
yourself::

    from ovsam_plugins.label_studio import Backend, create_app, settings_from_env
    app = create_app(settings_from_env(model="ovsam-lvis"))

Importing this package imports neither Flask nor label-studio-sdk (``pip install
"ovsam[label-studio]"`` brings them); only ``ovsam_core``'s public API is used.
"""
from __future__ import annotations

__all__ = ["Backend", "BackendError", "Settings", "create_app", "settings_from_env"]


def __getattr__(name: str):
    if name in ("Backend", "BackendError"):
        from . import backend

        return getattr(backend, name)
    if name == "create_app":
        from .app import create_app

        return create_app
    if name in ("Settings", "settings_from_env"):
        from . import settings

        return getattr(settings, name)
    raise AttributeError(name)
