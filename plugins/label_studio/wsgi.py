"""WSGI entry point: ``gunicorn "ovsam_plugins.label_studio.wsgi:app"`` (settings from the environment,
logging at ``LOG_LEVEL``, default INFO; ``ovsam label-studio serve`` runs it so).

Do not run gunicorn with ``--preload``: the model must be loaded in each worker after the fork.
"""
from ovsam_core import setup_logging

from .app import create_app

setup_logging(None, "ovsam.label_studio")  # LOG_LEVEL
app = create_app()
