"""``ovsam label-studio serve``: run the ML backend (gunicorn, or Werkzeug's threaded server).

Registered through the ``ovsam.cli`` entry point; importing this module imports neither Flask
nor label-studio-sdk (they are imported when the command runs).

Secrets are read from the environment only (not from the command line, where ``ps`` shows
them): ``LABEL_STUDIO_API_KEY`` (legacy token or personal access token), ``BASIC_AUTH_USER`` /
``BASIC_AUTH_PASS``. Every option below also has an ``OVSAM_LS_*`` variable (see
:mod:`.settings`); the command line wins.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path


def register(subparsers) -> None:
    """Add ``label-studio serve`` to the ``ovsam`` command line."""
    p = subparsers.add_parser("label-studio", help="Label Studio ML backend (interactive + batch pre-annotation)",
                              description="Label Studio ML backend: smart keypoints/rectangles -> masks with "
                                          "labels from the project's label set.")
    sub = p.add_subparsers(dest="ls_command", required=True)
    s = sub.add_parser("serve", help="serve the backend for Label Studio (default http://127.0.0.1:9090)",
                       description="Serve the ML backend. In Label Studio: Settings > Model > Connect model, "
                                   "URL http://<host>:<port>, 'Interactive preannotations' on. Set LABEL_STUDIO_URL "
                                   "and LABEL_STUDIO_API_KEY so the backend can read uploaded / local-storage images.")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; 0.0.0.0 in Docker)")
    s.add_argument("--port", type=int, default=int(os.environ.get("PORT", 9090)), help="port (default 9090)")
    s.add_argument("--model", default=None, help="registered model (default ovsam-lvis; see `ovsam models`)")
    s.add_argument("--vocab", default=None,
                   help="vocabulary: default the project's own labels (+ predicted_values); or a preset "
                        "(lvis, coco, imagenet21k), a file or a `vocab build` folder, mapped onto the project's labels")
    s.add_argument("--device", default=None, help="auto, cpu, cuda or mps (default auto)")
    s.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"], help="image-encoder precision")
    s.add_argument("--weights-dir", type=Path, help="folder holding the model's files by their official names")
    s.add_argument("--weights", type=Path, help="a fused .safetensors file written by `ovsam convert`")
    s.add_argument("--data-dir", "--model-dir", dest="model_dir", type=Path,
                   help="where the learned prototypes (SQLite) live (env OVSAM_LS_DATA_DIR or MODEL_DIR; default "
                        "the platform's user data folder, e.g. ~/.local/share/ovsam/label-studio)")
    s.add_argument("--label-studio-url", help="Label Studio's URL for /data/... images (env LABEL_STUDIO_URL)")
    s.add_argument("--document-root", type=Path,
                   help="read /data/local-files/?d= paths from this folder (env LOCAL_FILES_DOCUMENT_ROOT)")
    s.add_argument("--upload-dir", type=Path, help="Label Studio's media/upload folder, if readable here")
    s.add_argument("--allowed-hosts", help="comma-separated extra hosts images may be downloaded from")
    s.add_argument("--top-k", type=int, default=None, help="alternatives per region in its meta (default 5)")
    s.add_argument("--label-source", choices=["model", "smart"], default=None,
                   help="interactive label: the recognised class (model, default) or the smart tool's label (smart)")
    s.add_argument("--no-learn", action="store_true", help="do not learn prototypes from annotations")
    s.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", 1)),
                   help="gunicorn worker processes, each with its own model (default 1)")
    s.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", 8)), help="threads per worker (default 8)")
    s.add_argument("--server", choices=["auto", "gunicorn", "werkzeug"], default="auto",
                   help="gunicorn (default where installed) or Werkzeug's threaded server")
    s.add_argument("--no-warmup", action="store_true", help="load the model on the first request, not at start")
    s.add_argument("--no-download", action="store_true", help="use local weight files only")
    s.add_argument("--check", action="store_true", help="load the model once and exit (e.g. in a Docker build)")
    s.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"), help="logging level (default INFO)")
    s.set_defaults(func=serve)

    c = sub.add_parser("connect", help="create a Label Studio project for a folder of images, connected to the backend",
                       description="Creates a project (labels: the model's vocabulary or --labels; smart keypoints "
                                   "and boxes -> brush masks), imports the images of FOLDER through local-files "
                                   "storage and connects the running backend. Needs LABEL_STUDIO_URL, "
                                   "LABEL_STUDIO_API_KEY and LOCAL_FILES_DOCUMENT_ROOT (as Label Studio was started).")
    c.add_argument("folder", type=Path, help="images to label (under LOCAL_FILES_DOCUMENT_ROOT)")
    c.add_argument("--model", default=None, help="the backend's model: its vocabulary gives the labels")
    c.add_argument("--labels", default=None, help="project labels instead, separated by commas")
    c.add_argument("--backend-url", default="http://127.0.0.1:9090", help="where `serve` listens")
    c.add_argument("--title", default="ovsam", help="project title")
    c.add_argument("--label-studio-url", help="Label Studio's URL (env LABEL_STUDIO_URL)")
    c.set_defaults(func=_connect)

    pl = sub.add_parser("prelabel", help="push predictions for every task of a project (large projects; resumable)",
                        description="Predicts every task of a project that has no prediction of this model version "
                                    "yet and posts it to Label Studio, with a progress bar. Safe to stop and start "
                                    "again: finished tasks are skipped, no prediction is written twice. Tasks with "
                                    "boxes/clicks are segmented from them; the others are pre-labelled with the "
                                    "project's labels (--auto). For projects where 'Retrieve predictions' would "
                                    "outlast Label Studio's ML_TIMEOUT_PREDICT (100 s).")
    pl.add_argument("--url", "--label-studio-url", dest="label_studio_url", help="Label Studio's URL (env LABEL_STUDIO_URL)")
    pl.add_argument("--api-key", "--token", dest="api_key",
                    help="legacy token or personal access token (better: env LABEL_STUDIO_API_KEY; `ps` shows options)")
    pl.add_argument("--project", type=int, required=True, help="project id (the number in /projects/<id>/)")
    pl.add_argument("--auto", choices=["find", "everything", "off"], default=None,
                    help="tasks without regions: find the project's labels (default), everything, or off")
    pl.add_argument("--points-per-side", type=int, default=None, help="prompt grid per side (default 32)")
    pl.add_argument("--min-score", type=float, default=None, help="minimum object score (default 0.5)")
    for a in ("--model", "--vocab", "--device", "--weights-dir", "--weights", "--document-root"):
        pl.add_argument(a, default=None, help="as for `serve`")
    pl.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"], help="as for `serve`")
    pl.add_argument("--no-progress", action="store_true", help="no progress bar")
    pl.set_defaults(func=_prelabel)


def _prelabel(args: argparse.Namespace) -> int:
    """Token from LABEL_STUDIO_API_KEY only (not the command line, where `ps` shows it)."""
    from .push import prelabel_project
    from .settings import settings_from_env

    s = settings_from_env(model=args.model, vocab=args.vocab, device=args.device, dtype=args.dtype,
                          weights_dir=args.weights_dir, weights=args.weights, document_root=args.document_root,
                          label_studio_url=args.label_studio_url, api_key=args.api_key, learn=False)
    params = {"auto": args.auto, "points_per_side": args.points_per_side, "min_score": args.min_score}
    report = prelabel_project(s, args.project, params, show_progress=not args.no_progress)
    print(f"project {args.project}: {report.summary('task')}")
    return 0 if not report.failed else 1


def _connect(args: argparse.Namespace) -> int:
    from .connect import connect

    from .settings import settings_from_env

    settings = settings_from_env(model=args.model, label_studio_url=args.label_studio_url)
    labels = [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels else None
    out = connect(settings, args.folder, args.backend_url, labels, args.title)
    print(f"project {out['project']}: {out['tasks']} images, labels {', '.join(out['labels'])}; backend connected")
    print(f"open {out['url']}, click a task, then click an object with the keypoint tool (Auto-Annotation on)")
    return 0


def _settings(args: argparse.Namespace):
    from .settings import parse_hosts, settings_from_env

    def opt(v):
        return None if v is None else str(v)

    hosts = parse_hosts(args.allowed_hosts) if args.allowed_hosts else None
    return settings_from_env(
        model=args.model, vocab=args.vocab, device=args.device, dtype=args.dtype,
        weights_dir=opt(args.weights_dir), weights=opt(args.weights), model_dir=opt(args.model_dir),
        label_studio_url=args.label_studio_url, document_root=opt(args.document_root),
        upload_dir=opt(args.upload_dir), allowed_hosts=hosts, top_k=args.top_k, label_source=args.label_source,
        learn=False if args.no_learn else None, warmup=False if args.no_warmup else True,
        download=False if args.no_download else None)


def serve(args: argparse.Namespace) -> int:
    try:
        import flask  # noqa: F401
        import label_studio_sdk  # noqa: F401
    except ImportError as e:
        raise ValueError(f"the Label Studio backend needs its extra: pip install \"ovsam[label-studio]\" ({e})") from None
    level = getattr(logging, str(args.log_level).upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)  # `ovsam` itself configured WARNING before calling us
    logging.getLogger("ovsam.label_studio").setLevel(level)
    settings = _settings(args)
    from .settings import settings_to_env

    settings.check()  # an unknown model or a mistyped vocabulary path is a usage error now
    os.environ.update(settings_to_env(settings))  # workers (and their reloads) read the same settings
    logging.getLogger("ovsam.label_studio").info(
        "learned prototypes: %s%s", settings.db_path, "" if settings.learn else " (learning off)")
    if args.check:
        from .backend import Backend, BackendError

        b = Backend(settings.with_(warmup=False))
        try:
            b.predictor()
        except BackendError as e:
            raise ValueError(str(e)) from None
        print(f"ok: {b.model_version} loaded on {b.predictor().device}")
        return 0
    use_gunicorn = args.server == "gunicorn"
    if args.server == "auto":
        try:
            import gunicorn  # noqa: F401

            use_gunicorn = os.name == "posix"
        except ImportError:
            use_gunicorn = False
    logging.getLogger("ovsam.label_studio").info(
        "serving %s on http://%s:%d (%s)", settings.model, args.host, args.port,
        "gunicorn" if use_gunicorn else "werkzeug")
    if use_gunicorn:
        _exec_gunicorn(args)
    else:
        from werkzeug.serving import run_simple

        from .app import create_app

        run_simple(args.host, args.port, create_app(settings), threaded=True, use_reloader=False)
    return 0


def _exec_gunicorn(args: argparse.Namespace) -> None:
    """Replace this process by a fresh Python running the gunicorn master (:mod:`.gunicorn_main`).

    This process has imported torch (``ovsam_core``); the master never runs the model, so it
    starts from a clean interpreter that imports gunicorn only, and each worker imports torch
    and loads the model after the fork (no preload: CUDA cannot be initialised before a fork).
    """
    import sys

    argv = [sys.executable, "-m", "ovsam_plugins.label_studio.gunicorn_main", f"{args.host}:{args.port}",
            str(args.workers), str(args.threads), str(args.log_level).lower()]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
