"""WSGI entry point: ``gunicorn "ovsam_plugins.label_studio.wsgi:app"`` (settings from the environment,
logging at ``LOG_LEVEL``, default INFO; ``ovsam label-studio serve`` runs it so).

Do not run gunicorn with ``--preload``: the model must be loaded in each worker after the fork.
"""
import os

from .app import create_app
from .cli import setup_logging

setup_logging(os.environ.get("LOG_LEVEL", "INFO"))
app = create_app()
