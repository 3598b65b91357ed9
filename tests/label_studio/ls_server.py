"""Start/stop a real Label Studio server (its own venv) and an ovsam backend, on 127.0.0.1 only.

Used by the end-to-end test; also runnable by hand::

    .venv/bin/python tests/label_studio/ls_server.py     # starts both, prints URLs, Ctrl-C stops
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]
LS_VENV = Path(os.environ.get("OVSAM_LS_VENV", REPO / ".venv-label-studio"))
if not LS_VENV.is_absolute():
    LS_VENV = REPO / LS_VENV
TEMPLATE = LS_VENV / "data-template"
DEFAULT_CREDENTIALS = {"username": "admin@example.com", "password": "ovsam-test-password",
                       "token": "0123456789abcdef0123456789abcdef01234567"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ls_available() -> bool:
    return (LS_VENV / "bin" / "label-studio").is_file()


def wait_http(url: str, timeout: float, proc: Optional[subprocess.Popen] = None, headers=None) -> None:
    end = time.time() + timeout
    last = None
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} while waiting for {url}")
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(0.25)
    raise TimeoutError(f"{url} not up after {timeout:.0f} s ({last})")


def stop(proc: Optional[subprocess.Popen], timeout: float = 15) -> None:
    """Stop a process group we started (by its PID), then kill it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class LabelStudio:
    url: str
    token: str
    proc: subprocess.Popen
    files_root: Path
    data_dir: Path
    log_path: Path

    def api(self, method: str, path: str, data=None, timeout: float = 60) -> object:
        body = json.dumps(data).encode() if data is not None else None
        req = urllib.request.Request(self.url + path, data=body, method=method, headers={
            "Authorization": f"Token {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path} -> {e.code}: {e.read()[:2000]!r}") from None
        return json.loads(raw) if raw else None


def start_label_studio(workdir: Path, timeout: float = 240, env_extra: Optional[Dict[str, str]] = None) -> LabelStudio:
    """A Label Studio server on a copy of the pre-migrated data dir (or a fresh one: slower);
    ``env_extra``: more settings (e.g. ``ML_TIMEOUT_PREDICT``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    data, home, files = workdir / "ls-data", workdir / "ls-home", workdir / "ls-files"
    creds = DEFAULT_CREDENTIALS
    if (TEMPLATE / "credentials.json").is_file() and (TEMPLATE / "data").is_dir():
        creds = json.loads((TEMPLATE / "credentials.json").read_text())
        shutil.copytree(TEMPLATE / "data", data, symlinks=True)
        shutil.copytree(TEMPLATE / "home", home, symlinks=True)
    for d in (data, home, files):
        d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO", "OVSAM_LS"))}
    env.update(HOME=str(home), LABEL_STUDIO_BASE_DATA_DIR=str(data), LOCAL_FILES_SERVING_ENABLED="true",
               LOCAL_FILES_DOCUMENT_ROOT=str(files), USE_DEFAULT_BANNED_SUBNETS="false",
               LATEST_VERSION_CHECK="false", COLLECT_ANALYTICS="false", PYTHONUNBUFFERED="1")
    env.update(env_extra or {})
    log_path = workdir / "label-studio.log"
    cmd = [str(LS_VENV / "bin" / "label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1",
           "--port", str(port), "--username", creds["username"], "--password", creds["password"],
           "--user-token", creds["token"], "--enable-legacy-api-token"]
    logf = open(log_path, "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", timeout, proc)
        wait_http(url + "/api/projects", 60, proc, headers={"Authorization": f"Token {creds['token']}"})
    except Exception:
        stop(proc)
        raise RuntimeError(f"Label Studio did not start; log tail:\n{log_path.read_text(errors='replace')[-3000:]}")
    return LabelStudio(url, creds["token"], proc, files, data, log_path)


@dataclass
class BackendProcess:
    url: str
    proc: subprocess.Popen
    log_path: Path


def start_backend(workdir: Path, env_extra: Dict[str, str], args=(), timeout: float = 120) -> BackendProcess:
    """``ovsam label-studio serve`` (from this repo's .venv) on a free port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO", "OVSAM_LS"))}
    env.update(env_extra)
    env["PYTHONUNBUFFERED"] = "1"
    log_path = workdir / f"backend-{port}.log"
    exe = Path(sys.executable).parent / "ovsam"
    cmd = [str(exe) if exe.is_file() else sys.executable, *([] if exe.is_file() else ["-m", "ovsam_core.cli"]),
           "label-studio", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    logf = open(log_path, "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", timeout, proc)
    except Exception:
        stop(proc)
        raise RuntimeError(f"backend did not start; log tail:\n{log_path.read_text(errors='replace')[-3000:]}")
    return BackendProcess(url, proc, log_path)


@contextmanager
def label_studio_with_backend(workdir: Path, images: Dict[str, bytes],
                              backend_env: Optional[Dict[str, str]] = None) -> Iterator[Tuple[LabelStudio, BackendProcess]]:
    """A Label Studio server with ``images`` (relative path -> bytes) under its local-files root,
    and ``ovsam label-studio serve`` (tiny model, CPU) connected to it; both stopped at the end."""
    ls = start_label_studio(workdir)
    be = None
    try:
        for rel, data in images.items():
            (ls.files_root / rel).parent.mkdir(parents=True, exist_ok=True)
            (ls.files_root / rel).write_bytes(data)
        be = start_backend(workdir, {"LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": ls.token,
                                     "MODEL_DIR": str(workdir / "model"), **(backend_env or {})},
                           ["--model", "ovsam-test", "--device", "cpu", "--log-level", "info"])
        yield ls, be
    finally:
        stop(be.proc if be else None)
        stop(ls.proc)


if __name__ == "__main__":  # pragma: no cover - manual use
    import tempfile

    wd = Path(tempfile.mkdtemp(prefix="ovsam-ls-"))
    ls = start_label_studio(wd)
    be = start_backend(wd, {"LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": ls.token, "MODEL_DIR": str(wd / "model")},
                       ["--model", "ovsam-test", "--device", "cpu"])
    print(f"Label Studio {ls.url} (token {ls.token}), backend {be.url}, files {ls.files_root}, logs in {wd}")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop(be.proc)
        stop(ls.proc)
