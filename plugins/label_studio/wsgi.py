"""WSGI entry point: ``gunicorn "ovsam_plugins.label_studio.wsgi:app"`` (settings from the environment).

Do not run gunicorn with ``--preload``: the model must be loaded in each worker after the fork.
"""
from .app import create_app

app = create_app()
