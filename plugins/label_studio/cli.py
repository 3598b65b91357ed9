"""``ovsam label-studio serve | connect | prelabel``: the ML backend (gunicorn, or Werkzeug's threaded
server), a project for a folder of images, predictions for a whole project. Registered through the
``ovsam.cli`` entry point; importing this module imports neither Flask, label-studio-sdk nor torch.

Options that are settings are declared on the :class:`~.settings.Settings` fields they set; their
environment variables, and secrets (read from the environment), are in the README's *Settings*.
"""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import replace
from pathlib import Path

APP = "ovsam_plugins.label_studio.wsgi:app"  # what gunicorn serves; each worker imports it after the fork


def _model_options(p: argparse.ArgumentParser, *settings: str) -> None:
    """How the model is loaded and where images are read (``serve`` and ``prelabel``), and ``settings``."""
    from ovsam_core import add_dataclass_options, add_model_options

    from .settings import Settings

    add_model_options(p, unset=True, quiet=False)
    p.add_argument("--vocab", help="vocabulary: default the project's own labels (+ predicted_values); or a preset "
                                   "(lvis, coco, imagenet21k), a file or a `vocab build` folder, mapped onto the "
                                   "project's labels")
    add_dataclass_options(p, Settings, "label_studio_url", "document_root", *settings)


def register(subparsers) -> None:
    """Add ``label-studio serve | connect | prelabel`` to the ``ovsam`` command line."""
    from ovsam_core import add_dataclass_options, add_prelabel_options, add_server_options

    from .settings import Settings

    p = subparsers.add_parser("label-studio", help="Label Studio ML backend (interactive + batch pre-annotation)",
                              description="Label Studio ML backend: smart keypoints/rectangles -> masks with "
                                          "labels from the project's label set.")
    sub = p.add_subparsers(dest="ls_command", required=True)
    s = sub.add_parser("serve", help="serve the backend for Label Studio (default http://127.0.0.1:9090)",
                       description="Serve the ML backend. In Label Studio: Settings > Model > Connect model, "
                                   "URL http://<host>:<port>, 'Interactive preannotations' on. Set LABEL_STUDIO_URL "
                                   "and LABEL_STUDIO_API_KEY so the backend can read uploaded / local-storage images.")
    s.set_defaults(func=serve)
    add_server_options(s, port=9090)
    _model_options(s, "model_dir", "upload_dir", "allowed_hosts", "top_k", "label_source", "learn")
    s.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="load the model on the first request, not at start")
    s.add_argument("--check", action="store_true", help="load the model once and exit (e.g. in a Docker build)")

    c = sub.add_parser("connect", help="create a Label Studio project for a folder of images, connected to the backend",
                       description="Creates a project (labels: the model's vocabulary or --labels; smart keypoints "
                                   "and boxes -> brush masks), imports the images of FOLDER through local-files "
                                   "storage and connects the running backend. Needs LABEL_STUDIO_URL, "
                                   "LABEL_STUDIO_API_KEY and LOCAL_FILES_DOCUMENT_ROOT (as Label Studio was started).")
    c.set_defaults(func=_connect)
    c.add_argument("folder", type=Path, help="images to label (under LOCAL_FILES_DOCUMENT_ROOT)")
    c.add_argument("--model", default=None, help="the backend's model: its vocabulary gives the labels")
    c.add_argument("--labels", default=None, help="project labels instead, separated by commas")
    c.add_argument("--backend-url", default="http://127.0.0.1:9090", help="where `serve` listens")
    c.add_argument("--title", default="ovsam", help="project title")
    add_dataclass_options(c, Settings, "label_studio_url")

    pl = sub.add_parser("prelabel", help="push predictions for every task of a project (large projects; resumable)",
                        description="Predicts every task of a project that has no prediction of this model version "
                                    "yet and posts it to Label Studio, with a progress bar. Safe to stop and start "
                                    "again: finished tasks are skipped, no prediction is written twice. Tasks with "
                                    "boxes/clicks are segmented from them; the others are pre-labelled with the "
                                    "project's labels (--auto). For projects where 'Retrieve predictions' would "
                                    "outlast Label Studio's ML_TIMEOUT_PREDICT (100 s).")
    pl.set_defaults(func=_prelabel)
    add_dataclass_options(pl, Settings, "api_key")
    pl.add_argument("--project", type=int, required=True, help="project id (the number in /projects/<id>/)")
    add_prelabel_options(pl)
    _model_options(pl)
    pl.add_argument("--no-progress", action="store_true", help="no progress bar")


def _settings(args: argparse.Namespace, **fixed):
    """Settings from the environment, overridden by the options given on the command line."""
    from ovsam_core import dataclass_overrides

    from .settings import Settings, settings_from_env

    return settings_from_env(**{**dataclass_overrides(args, Settings),
                                "download": False if getattr(args, "no_download", False) else None, **fixed})


def _prelabel(args: argparse.Namespace) -> int:
    from ovsam_core import prelabel_overrides

    from .push import prelabel_project

    report = prelabel_project(_settings(args, learn=False), args.project, prelabel_overrides(args),
                              show_progress=not args.no_progress)
    print(f"project {args.project}: {report.summary('task')}")
    return 0 if not report.failed else 1


def _connect(args: argparse.Namespace) -> int:
    from ovsam_core import split_names

    from .connect import connect

    out = connect(_settings(args), args.folder, args.backend_url, list(split_names(args.labels)) or None, args.title)
    print(f"project {out['project']}: {out['tasks']} images, labels {', '.join(out['labels'])}; backend connected")
    print(f"open {out['url']}, click a task, then click an object with the keypoint tool (Auto-Annotation on)")
    return 0


def serve(args: argparse.Namespace) -> int:
    from ovsam_core import require_package, serve_wsgi, setup_logging

    for module in ("flask", "label_studio_sdk"):  # the backend's extra
        require_package(module, "label-studio")
    setup_logging(args.log_level, "ovsam.label_studio")
    log = logging.getLogger("ovsam.label_studio")
    settings = _settings(args)
    from .settings import settings_to_env

    settings.check()  # an unknown model or a mistyped vocabulary path is a usage error now
    os.environ.update(settings_to_env(settings))  # workers (and their reloads) read the same settings
    log.info("learned prototypes: %s%s", settings.db_path, "" if settings.learn else " (learning off)")
    if args.check:
        from .backend import Backend, BackendError

        b = Backend(replace(settings, warmup=False))
        try:
            predictor = b.model.get()
        except BackendError as e:
            raise ValueError(str(e)) from None
        print(f"ok: {b.model_version} loaded on {predictor.device}")
        return 0
    from werkzeug.serving import run_simple

    from .app import create_app

    serve_wsgi(args, APP, lambda host, port: run_simple(host, port, create_app(settings), threaded=True,
                                                        use_reloader=False), log, settings.model)
    return 0
