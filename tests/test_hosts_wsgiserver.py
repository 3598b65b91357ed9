"""ovsam_core.hosts.wsgiserver: logging of a host's service, gunicorn's command line, the server choice."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

from ovsam_core import gunicorn_argv, setup_logging, use_gunicorn


def test_gunicorn_argv_serves_the_app_with_gthread_workers_and_no_timeout():
    argv = gunicorn_argv("pkg.wsgi:app", "127.0.0.1:9090", 2, 8, "DEBUG")
    assert argv[:3] == [sys.executable, "-m", "gunicorn"] and argv[-1] == "pkg.wsgi:app"
    opts = dict(zip(argv[3:-1:2], argv[4:-1:2]))
    assert opts["--bind"] == "127.0.0.1:9090" and opts["--workers"] == "2" and opts["--threads"] == "8"
    assert opts["--worker-class"] == "gthread" and opts["--timeout"] == "0" and opts["--log-level"] == "debug"
    assert "--preload" not in argv and "--no-control-socket" in argv
    assert "--no-control-socket" not in gunicorn_argv("a:b", "x:1", 1, 1, control_socket_option=False)


def test_gunicorn_accepts_the_argv():
    """The options exist in the installed gunicorn (`--check-config` parses them without serving)."""
    import pytest

    pytest.importorskip("gunicorn")
    argv = gunicorn_argv("ovsam_core.hosts.wsgiserver:LOG_FORMAT", "127.0.0.1:0", 1, 1)
    r = subprocess.run([*argv[:-1], "--check-config", "--print-config", argv[-1]], capture_output=True, text=True,
                       timeout=120)
    assert "worker_class" in r.stdout and "gthread" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


def test_use_gunicorn():
    assert use_gunicorn("gunicorn") and not use_gunicorn("werkzeug")
    try:
        import gunicorn  # noqa: F401
        installed = True
    except ImportError:
        installed = False
    assert use_gunicorn("auto") == (installed and os.name == "posix")


def test_setup_logging_sets_root_and_named_loggers(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    root, named = logging.getLogger(), logging.getLogger("ovsam.test_wsgiserver")
    before = root.level, named.level
    try:
        setup_logging(None, "ovsam.test_wsgiserver")
        assert root.level == named.level == logging.DEBUG
        setup_logging("warning", "ovsam.test_wsgiserver")
        assert named.level == logging.WARNING
    finally:
        root.setLevel(before[0])
        named.setLevel(before[1])
