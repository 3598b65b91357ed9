"""ovsam_core.hosts.hostapi.HostDownloader: the host's server with its key, allowed hosts without, nothing else."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ovsam_core import DownloadError, HostDownloader, RefusedSource, parse_hosts


@pytest.fixture
def servers():
    """Two local servers: ``(url, routes, seen Authorization headers)`` each."""
    out, httpds = [], []
    for _ in range(2):
        routes, seen = {}, []

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):  # noqa: D401 - quiet
                pass

            def _answer(self, routes=routes, seen=seen):
                seen.append(self.headers.get("Authorization"))
                status, body = routes.get(self.path, (404, b""))
                body = body(self) if callable(body) else body
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        httpds.append(httpd)
        out.append((f"http://127.0.0.1:{httpd.server_address[1]}", routes, seen))
    yield out
    for h in httpds:
        h.shutdown()
        h.server_close()


def test_parse_hosts():
    assert parse_hosts(" a.example, B.example:8080;c ,, ") == ("a.example", "b.example:8080", "c")


def test_key_only_to_the_host_and_allowed_hosts_only(servers):
    (host, routes, seen), (other, other_routes, other_seen) = servers
    routes["/img"] = (200, b"mine")
    other_routes["/img"] = (200, b"theirs")
    d = HostDownloader(host + "/", "legacy-key", max_bytes=100)
    assert d.get_path("/img") == b"mine" and seen == ["Token legacy-key"]
    with pytest.raises(RefusedSource):
        d.get(other + "/img")  # not allowed
    allowed = HostDownloader(host, "legacy-key", [other.split("://")[1]], max_bytes=100)
    assert allowed.trusted(other + "/x") and allowed.is_host(host + "/x") and not allowed.is_host(other + "/x")
    assert allowed.get(other + "/img") == b"theirs" and other_seen == [None]  # the key never leaves the host
    with pytest.raises(DownloadError, match="set the URL") as e:
        HostDownloader(None, "k", max_bytes=100, missing_url_hint="set the URL").get_path("/img")
    assert e.value.status == 422


def test_jwt_refresh_token_is_exchanged_and_renewed_after_401(servers):
    (host, routes, seen), _ = servers
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJ0IjoxfQ.sig"
    n = {"refresh": 0}

    def refresh(handler):
        n["refresh"] += 1
        return json.dumps({"access": f"acc-{n['refresh']}"}).encode()

    routes["/api/token/refresh/"] = (200, refresh)
    routes["/img"] = (200, b"png")
    d = HostDownloader(host, jwt, max_bytes=100)
    assert d.get_path("/img") == b"png" and d.get_path("/img") == b"png"
    assert n["refresh"] == 1 and seen[-1] == "Bearer acc-1"  # the access token is reused
    routes["/img"] = (401, b"")
    with pytest.raises(DownloadError):
        d.get_path("/img")
    assert n["refresh"] == 2  # renewed once after the 401
    routes["/api/token/refresh/"] = (401, b"")
    bad = HostDownloader(host, jwt, max_bytes=100, host_name="The host", key_hint="fix KEY")
    with pytest.raises(DownloadError, match="The host refused the personal access token .401.; fix KEY") as e:
        bad.get_path("/img")
    assert e.value.status == 502
