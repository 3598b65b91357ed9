"""A tiny fake Hugging Face Hub (and plain file host) on 127.0.0.1 for download tests.

What ``huggingface_hub.hf_hub_download`` (v2.4) needs from ``HEAD /{repo}/resolve/{rev}/{file}``
(``/spaces/{repo}/...`` for Spaces), see ``file_download.get_hf_file_metadata``:

* ``X-Repo-Commit``: the commit hash; without it the response is not treated as a Hub.
* ``ETag`` (or ``X-Linked-Etag``, preferred): the file's identity; the sha256 for LFS files.
* ``Content-Length`` (or ``X-Linked-Size`` on a redirect): the expected size, checked after
  the transfer.

``lfs=True`` files answer like the real Hub does for LFS files: a 302 from the resolve URL to
a "CDN" origin (a second port, so huggingface_hub treats it as another host and reads the
metadata from the redirect response: ``X-Linked-Etag``, ``X-Linked-Size``, ``Location``).
Plain files are also served at ``/files/<name>``. ``Range: bytes=N-`` is honoured (206).

``truncate(path)`` makes the next GET of ``path`` send the headers and half of the body, then
drop the connection; later GETs of that path answer 503 (a dead server), so the client's
resume attempt fails quickly.

Every request is logged in ``FakeHub.requests`` as ``(method, path)``.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Set, Tuple
from urllib.parse import quote, unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class _Entry:
    data: bytes
    lfs: bool = False


@dataclass
class FakeHub:
    """Start with ``with FakeHub() as hub:``; ``hub.endpoint`` goes into ``HF_ENDPOINT``."""

    files: Dict[str, _Entry] = field(default_factory=dict)      # request path -> content
    blobs: Dict[str, bytes] = field(default_factory=dict)       # CDN: sha256 -> content
    requests: List[Tuple[str, str]] = field(default_factory=list)
    truncated: Set[str] = field(default_factory=set)            # paths to cut on next GET
    dead: Set[str] = field(default_factory=set)                 # paths answering 503
    _servers: List[ThreadingHTTPServer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ content
    def add_hf_file(self, repo_id: str, filename: str, data: bytes, *, repo_type: str = "model",
                    revision: str = "main", lfs: bool = False) -> str:
        """Serve ``data`` as ``filename`` of a Hub repo; returns the resolve path."""
        prefix = "" if repo_type == "model" else f"/{repo_type}s"
        path = f"{prefix}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(filename)}"
        self.files[path] = _Entry(data, lfs)
        if lfs:
            self.blobs[sha256_bytes(data)] = data
        return path

    def add_url_file(self, name: str, data: bytes) -> str:
        """Serve ``data`` at a plain URL; returns the URL."""
        path = f"/files/{quote(name)}"
        self.files[path] = _Entry(data)
        return self.endpoint + path

    def truncate(self, path_or_url: str) -> None:
        self.truncated.add(urlsplit(path_or_url).path)

    def count(self, method: Optional[str] = None) -> int:
        with self._lock:
            return sum(1 for m, _ in self.requests if method is None or m == method)

    # ------------------------------------------------------------------ server
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def __enter__(self) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            # -------------------------------------------------------------
            def _reply(self, code: int, headers: Dict[str, str], payload: bytes = b"",
                       body: bool = True) -> None:
                self.send_response(code)
                headers.setdefault("Content-Length", str(len(payload)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if body and payload:
                    self.wfile.write(payload)

            def _serve(self, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                raw_path = urlsplit(self.path).path
                with hub._lock:
                    hub.requests.append((self.command, raw_path))
                is_cdn = self.server is hub._servers[1]
                if is_cdn:
                    data = hub.blobs.get(path.rsplit("/", 1)[-1])
                    if data is None:
                        return self._reply(404, {}, b"no such blob", body)
                    return self._send_data(raw_path, data, {"ETag": f'"{sha256_bytes(data)}"'}, body)
                entry = hub.files.get(raw_path) or hub.files.get(quote(path))
                if entry is None:
                    headers = {"X-Error-Code": "EntryNotFound"} if "/resolve/" in path else {}
                    if "/resolve/" in path:
                        headers["X-Repo-Commit"] = COMMIT
                    return self._reply(404, headers, b"not found", body)
                sha = sha256_bytes(entry.data)
                if "/resolve/" in raw_path and entry.lfs:
                    return self._reply(302, {
                        "Location": f"{hub.cdn}/blobs/{sha}",
                        "X-Repo-Commit": COMMIT,
                        "X-Linked-Etag": f'"{sha}"',
                        "X-Linked-Size": str(len(entry.data)),
                        "ETag": '"0000000000000000000000000000000000000000"',
                    }, b"", body)
                headers = {"ETag": f'"{sha}"'}
                if "/resolve/" in raw_path:
                    headers["X-Repo-Commit"] = COMMIT
                return self._send_data(raw_path, entry.data, headers, body)

            def _send_data(self, raw_path: str, data: bytes, headers: Dict[str, str],
                           body: bool) -> None:
                if body and raw_path in hub.dead:
                    return self._reply(503, {}, b"server gone", body)
                start = 0
                rng = self.headers.get("Range", "")
                if rng.startswith("bytes=") and rng[6:].split("-")[0].isdigit():
                    start = int(rng[6:].split("-")[0])
                payload = data[start:]
                code = 200
                if start:
                    code = 206
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                headers["Accept-Ranges"] = "bytes"
                headers["Content-Type"] = "application/octet-stream"
                if body and raw_path in hub.truncated:
                    hub.truncated.discard(raw_path)
                    hub.dead.add(raw_path)
                    self.send_response(code)
                    headers["Content-Length"] = str(len(payload))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self._reply(code, headers, payload, body)

        for _ in range(2):   # [0]: the Hub, [1]: the "CDN" (another origin)
            srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            srv.daemon_threads = True
            threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02},
                             daemon=True).start()
            self._servers.append(srv)
        return self

    def __exit__(self, *exc: object) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        self._servers.clear()
