"""Running a host's WSGI service: logging, and gunicorn's own command line in place of this process.

A host's service process (``ovsam label-studio serve``) has imported torch through ``ovsam_core``.
gunicorn's master never runs the model, so :func:`exec_gunicorn` replaces the process by a fresh
Python running ``python -m gunicorn ... MODULE:APP``: the master imports gunicorn only, and each
worker imports the app module (torch, the model) after the fork (no ``--preload``: CUDA cannot be
initialised before a fork). The workers log as :func:`setup_logging` says, with ``LOG_LEVEL``
from the environment (the app module calls it). :func:`add_server_options` and :func:`serve_wsgi`
are a service command's options and its last step. Nothing here imports gunicorn or a web framework.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib.util import find_spec
from typing import Callable, Dict, List, NoReturn, Optional

LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def setup_logging(level_name: Optional[str] = None, *loggers: str) -> None:
    """Log at ``level_name`` (default ``$LOG_LEVEL``, else INFO) to stderr, the root logger and
    ``loggers`` included (a command-line tool may have set the root to WARNING before)."""
    name = level_name or os.environ.get("LOG_LEVEL", "INFO")
    level = getattr(logging, str(name).upper(), logging.INFO)
    logging.basicConfig(level=level, format=LOG_FORMAT)
    for logger in ("", *loggers):
        logging.getLogger(logger).setLevel(level)


def use_gunicorn(server: str) -> bool:
    """``server`` ``gunicorn``, ``werkzeug`` (or another threaded server) or ``auto``: gunicorn where
    it is installed, on POSIX."""
    return server == "gunicorn" or (server == "auto" and os.name == "posix" and find_spec("gunicorn") is not None)


def gunicorn_argv(app: str, bind: str, workers: int, threads: int, log_level: str = "info",
                  control_socket_option: bool = True) -> List[str]:
    """``python -m gunicorn`` serving ``app`` (``module:attribute``): gthread workers, no timeout
    (a worker may load a model for minutes), access and error log to stderr, no control socket
    (``control_socket_option``: gunicorn >= 25 has one, opened under ``$HOME`` by default)."""
    argv = [sys.executable, "-m", "gunicorn", "--bind", bind, "--workers", str(workers), "--threads", str(threads),
            "--worker-class", "gthread", "--timeout", "0", "--graceful-timeout", "30", "--access-logfile", "-",
            "--error-logfile", "-", "--log-level", str(log_level).lower()]
    if control_socket_option:
        argv.append("--no-control-socket")
    return [*argv, app]


def exec_gunicorn(app: str, bind: str, workers: int, threads: int, log_level: str = "info",
                  env: Optional[Dict[str, str]] = None) -> NoReturn:
    """Replace this process by :func:`gunicorn_argv` (``env`` and ``LOG_LEVEL`` added to the environment)."""
    from importlib.metadata import version

    os.environ.update({**(env or {}), "LOG_LEVEL": str(log_level)})
    argv = gunicorn_argv(app, bind, workers, threads, log_level, int(version("gunicorn").split(".")[0]) >= 25)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def add_server_options(p: argparse.ArgumentParser, port: int = 9090) -> None:
    """``--host --port --workers --threads --server --log-level`` of a service command (defaults from
    ``PORT``, ``WORKERS``, ``THREADS`` and ``LOG_LEVEL`` when set), for :func:`serve_wsgi`."""
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; 0.0.0.0 in Docker)")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", port)), help=f"port (default {port})")
    p.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", 1)),
                   help="gunicorn worker processes, each with its own model (default 1)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", 8)),
                   help="threads per worker (default 8)")
    p.add_argument("--server", choices=["auto", "gunicorn", "werkzeug"], default="auto",
                   help="gunicorn (default where installed) or Werkzeug's threaded server")
    p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"), help="logging level (default INFO)")


def serve_wsgi(args: argparse.Namespace, app: str, threaded: Callable[[str, int], None], log: logging.Logger,
               name: str = "the service") -> None:
    """Serve as :func:`add_server_options`' ``args`` say: gunicorn (:func:`use_gunicorn`) replaces this
    process by :func:`exec_gunicorn` of ``app`` (``module:attribute``), else ``threaded(host, port)``
    runs a threaded server here (e.g. Werkzeug's ``run_simple`` of the app); logs which, serving ``name``."""
    gunicorn = use_gunicorn(args.server)
    log.info("serving %s on http://%s:%d (%s)", name, args.host, args.port, "gunicorn" if gunicorn else "werkzeug")
    if gunicorn:
        exec_gunicorn(app, f"{args.host}:{args.port}", args.workers, args.threads, args.log_level)
    threaded(args.host, args.port)
