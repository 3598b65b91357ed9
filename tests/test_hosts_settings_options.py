"""ovsam_core.hosts.cliopts.option / add_dataclass_options / dataclass_overrides and
ovsam_core.hosts.wsgiserver.add_server_options / serve_wsgi: a service command's options."""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

import pytest

import ovsam_core.hosts.wsgiserver as wsgiserver
from ovsam_core import add_dataclass_options, add_server_options, dataclass_overrides, option, serve_wsgi


@dataclass(frozen=True)
class Demo:
    data_dir: str = field(default="", metadata=option("where data lives", "--data-dir", "--model-dir"))
    top_k: int = field(default=5, metadata=option("alternatives"))
    weight: float = field(default=1.0, metadata=option("a weight"))
    learn: bool = field(default=True, metadata=option("do not learn", "--no-learn"))
    verbose: bool = field(default=False, metadata=option("say more", "--verbose"))
    hosts: Tuple[str, ...] = field(default=(), metadata=option("hosts", type=lambda v: tuple(v.split(","))))
    source: str = field(default="a", metadata=option("a or b", choices=("a", "b")))
    path: Optional[Path] = None  # no option


def _parser(*names: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_dataclass_options(p, Demo, *names)
    return p


def test_options_from_fields_default_to_not_given():
    names = ("data_dir", "top_k", "weight", "learn", "verbose", "hosts", "source")
    a = _parser(*names).parse_args([])
    assert all(getattr(a, n) is None for n in names) and dataclass_overrides(a, Demo) == {}
    a = _parser(*names).parse_args(["--model-dir", "d", "--top-k", "3", "--weight", "0.5", "--no-learn", "--verbose",
                                    "--hosts", "x,y", "--source", "b"])
    assert dataclass_overrides(a, Demo) == {"data_dir": "d", "top_k": 3, "weight": 0.5, "learn": False,
                                            "verbose": True, "hosts": ("x", "y"), "source": "b"}
    with pytest.raises(SystemExit):
        _parser("source").parse_args(["--source", "c"])
    assert "where data lives" in _parser("data_dir").format_help()
    assert "--top-k" not in _parser("data_dir").format_help()  # only the fields named


def test_overrides_turn_paths_into_strings():
    assert dataclass_overrides(argparse.Namespace(path=Path("/x"), top_k=None), Demo) == {"path": "/x"}


def test_server_options_and_serve_wsgi(monkeypatch):
    monkeypatch.setenv("PORT", "9191")
    p = argparse.ArgumentParser()
    add_server_options(p, port=9090)
    a = p.parse_args(["--server", "werkzeug", "--host", "0.0.0.0"])
    assert (a.host, a.port, a.workers, a.threads, a.server) == ("0.0.0.0", 9191, 1, 8, "werkzeug")
    ran = []
    serve_wsgi(a, "pkg:app", lambda host, port: ran.append((host, port)), logging.getLogger("t"), "m")
    assert ran == [("0.0.0.0", 9191)]
    execs = []
    monkeypatch.setattr(wsgiserver, "exec_gunicorn", lambda *args: execs.append(args))
    serve_wsgi(p.parse_args(["--server", "gunicorn", "--workers", "2"]), "pkg:app", lambda h, p: None,
               logging.getLogger("t"))
    assert execs == [("pkg:app", "127.0.0.1:9191", 2, 8, "INFO")]
