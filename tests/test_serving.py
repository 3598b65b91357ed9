"""Unit tests of ovsam_core.hosts.serving (service building blocks) and ovsam_core.hosts.safe_download."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Tuple

import pytest

from ovsam_core import (BytesLRU, DownloadError, ImageCache, JobQueue, LazyModel, Metrics, ProjectOptions, RefusedSource,
                        data_url_bytes, dataclass_from_env, dataclass_to_env, env_table, host_port, json_object, overrun_note,
                        parse_bool, read_capped_file, rss_bytes, safe_download)


def test_metrics_and_rss():
    m = Metrics()
    m.add("a")
    m.add("a", 2)
    assert m.snapshot() == {"a": 3.0}
    assert rss_bytes() > 1_000_000
    r = m.report()
    assert r["counters"] == {"a": 3.0} and r["rss_bytes"] > 1_000_000 and 0 <= r["uptime_seconds"] < 60
    assert "embedding_cache" not in r

    class Cache:
        nbytes = 10

        def __len__(self):
            return 2

    class Pred:
        cache, encoder_calls = Cache(), 3

    assert m.report(Pred())["embedding_cache"] == {"entries": 2, "bytes": 10, "encoder_calls": 3}


def test_json_object_says_what_is_wrong():
    assert json_object(b'{"a": 1}', "the body") == {"a": 1} and json_object({"b": 2}, "x") == {"b": 2}
    assert json_object("", "opts", empty_ok=True) == {} and json_object(None, "opts", empty_ok=True) == {}
    for raw, words in [(b"", "the body is empty"), (b"{nope", "the body is not JSON"), (b"\xff", "not JSON"),
                       ("[1]", "the body must be a JSON object$"), (None, "is empty")]:
        with pytest.raises(ValueError, match=words):
            json_object(raw, "the body")
    with pytest.raises(ValueError, match=r'must be a JSON object, e.g. \{"k": 1\}'):
        json_object("3", "opts", empty_ok=True, example='{"k": 1}')


def test_bytes_lru_evicts_oldest_and_skips_big_values():
    lru = BytesLRU(10, len)
    lru.put("a", "xxxx")
    lru.put("b", "yyyy")
    assert lru.get("a") == "xxxx"  # a is now the newest
    lru.put("c", "zzzz")           # 12 bytes > 10: b (oldest) goes
    assert lru.get("b") is None and lru.get("a") and lru.get("c") and lru.nbytes == 8
    lru.put("d", "x" * 6)          # over half the budget: not kept
    assert lru.get("d") is None and len(lru) == 2


def test_lazy_model_loads_once_and_keeps_the_error():
    calls = []

    def load():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk gone")
        return "model"

    lm = LazyModel(load)
    with pytest.raises(OSError):
        lm.get()
    assert lm.error == "OSError: disk gone"
    assert lm.start().join() is None and lm.get() == "model" and lm.error is None and len(calls) == 2


def test_job_queue_runs_jobs_and_survives_a_failure():
    done, errors = [], []
    q = JobQueue(lambda j: done.append(1 / j), on_error=lambda j, e: errors.append(j))
    assert q.put(1) and q.put(0) and q.put(2)
    q.flush(10)
    assert done == [1.0, 0.5] and errors == [0]
    q.close()
    full = JobQueue(lambda j: threading.Event().wait(1), maxsize=1)
    assert full.put(1)
    results = [full.put(i) for i in range(5)]
    assert results.count(False) >= 3  # a full queue refuses


@dataclass(frozen=True)
class S:
    name: str = "x"
    n: int = 1
    on: bool = False
    hosts: Tuple[str, ...] = ()


TABLE = {"A_NAME": ("name", str), "A_N": ("n", int), "A_ON": ("on", parse_bool),
         "A_HOSTS": ("hosts", lambda v: tuple(v.split(",")))}


def test_dataclass_env_round_trip_and_errors():
    s = dataclass_from_env(S, TABLE, {"A_NAME": "y", "A_N": "3", "A_ON": "Yes", "A_HOSTS": "a,b"}, n=4)
    assert s == S("y", 4, True, ("a", "b"))
    assert dataclass_from_env(S, TABLE, dataclass_to_env(s, TABLE)) == s
    with pytest.raises(ValueError, match="bad value for A_N"):
        dataclass_from_env(S, TABLE, {"A_N": "many"})
    with pytest.raises(TypeError, match="unknown settings"):
        dataclass_from_env(S, TABLE, {}, colour="red")


# ----------------------------------------------------------------------------- safe_download
@pytest.fixture()
def server():
    routes = {}

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            status, headers, body = routes.get(self.path, (404, {}, b""))
            if callable(body):
                body = body(self)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    httpd.shutdown()
    httpd.server_close()


def _session():
    import requests

    s = requests.Session()
    s.trust_env = False
    return s


def test_safe_download_trust_redirects_auth_and_size(server):
    url, routes = server
    mine = host_port(url)
    trusted = lambda u: host_port(u) == mine  # noqa: E731
    seen = []
    routes["/ok"] = (200, {}, lambda h: seen.append(h.headers.get("Authorization")) or b"data")
    routes["/hop"] = (302, {"Location": "/ok"}, b"")
    routes["/away"] = (302, {"Location": "http://169.254.169.254/x"}, b"")
    routes["/presign"] = (302, {"Location": "https://10.1.2.3/bucket"}, b"")
    routes["/big"] = (200, {}, b"x" * 100)
    routes["/denied"] = (401, {}, b"")
    kw = dict(session=_session(), trusted=trusted, max_bytes=50, auth=lambda u, retry: f"Token {int(retry)}")
    assert safe_download(url + "/hop", **kw) == b"data" and seen == ["Token 0"]
    with pytest.raises(RefusedSource):
        safe_download("http://example.invalid/x", **kw)
    with pytest.raises(RefusedSource, match="redirect"):
        safe_download(url + "/away", **kw)
    with pytest.raises(RefusedSource, match="non-public"):
        safe_download(url + "/presign", open_redirect_https=True, **kw)
    with pytest.raises(DownloadError, match="50") as e:
        safe_download(url + "/big", **kw)
    assert e.value.status == 413
    with pytest.raises(DownloadError, match="fix the key") as e:
        safe_download(url + "/denied", auth_hint="fix the key", **kw)
    assert e.value.status == 502
    with pytest.raises(DownloadError) as e:
        safe_download(url + "/missing", **kw)
    assert e.value.status == 404


def test_env_table_prefixes_fields_and_keeps_aliases_in_order():
    table = env_table(S, "A_", before={"OTHER_NAME": "name"}, after={"LAST_N": "n"}, skip=("hosts",))
    assert list(table) == ["OTHER_NAME", "A_NAME", "A_N", "A_ON", "LAST_N"]
    assert [table[k][1] for k in ("A_NAME", "A_N", "A_ON")] == [str, int, parse_bool]
    s = dataclass_from_env(S, table, {"OTHER_NAME": "x", "A_N": "2", "LAST_N": "5", "A_ON": "on"})
    assert s == S("x", 5, True)  # LAST_N (after) wins over A_N
    assert dataclass_from_env(S, table, {"OTHER_NAME": "x", "A_NAME": "y"}).name == "y"  # the prefixed name wins
    hosts = env_table(S, "A_", parsers={"hosts": lambda v: tuple(v.split(","))})
    assert dataclass_from_env(S, hosts, {"A_HOSTS": "a,b"}).hosts == ("a", "b")


def test_image_cache_decodes_once_and_maps_errors_to_statuses():
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(buf, "PNG")
    png = buf.getvalue()
    calls = []
    m = Metrics()
    cache = ImageCache(10 ** 6, max_pixels=1000, max_image_bytes=10 ** 6, limit_hint="RAISE_ME", metrics=m)
    img = cache.load("a", lambda: calls.append(1) or png)
    assert (img.width, img.height) == (30, 20) and cache.load("a", lambda: b"never") is img and calls == [1]
    assert len(cache) == 1 and cache.nbytes == 20 * 30 * 3 and m.snapshot() == {"image_cache_hits": 1.0}
    big = io.BytesIO()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(big, "PNG")
    with pytest.raises(DownloadError, match="RAISE_ME") as e:
        cache.load("b", big.getvalue)
    assert e.value.status == 413
    with pytest.raises(DownloadError, match="unreadable image") as e:
        cache.load("c", lambda: b"not an image")
    assert e.value.status == 422 and len(cache) == 1


def test_overrun_note_warns_and_cuts(caplog):
    import logging
    import time

    log = logging.getLogger("test.overrun")
    assert overrun_note(time.time(), 0, 3, 10.0, "hint", log) is None
    assert overrun_note(time.time() - 4, 1, 3, 10.0, "use the batch command", log, unit="task") is None
    assert "3 tasks will take about 12 s. use the batch command" in caplog.text
    note = overrun_note(time.time() - 11, 1, 3, 10.0, "hint", log, unit="task", limit_name="TIMEOUT")
    assert note == "not run: the request took longer than the caller waits (10 s, TIMEOUT)"
    assert "2 of 3 tasks not run after 11 s" in caplog.text


def test_project_options_check_persist_and_reload(tmp_path):
    def check(o):
        if "bad" in o:
            raise ValueError("unknown key 'bad'")

    opts = ProjectOptions(str(tmp_path / "p"), check, "extra_params")
    assert opts.get("3") == {} and opts.set("3", '{"auto": "off"}') == {"auto": "off"}
    assert ProjectOptions(str(tmp_path / "p")).get("3") == {"auto": "off"}  # another process reads the file
    assert opts.set("4", {"n": 1}, persist=False) == {"n": 1} and not (tmp_path / "p" / "4.json").exists()
    for raw, words in [("{nope", "extra_params is not JSON"), ("[1]", "must be a JSON object"),
                       ({"bad": 1}, "extra_params: unknown key 'bad'")]:
        with pytest.raises(ValueError, match=words):
            opts.set("3", raw)
    assert opts.get("3") == {"auto": "off"} and opts.parse("") == {} and opts.parse(None) == {}


def test_read_capped_file_and_data_urls(tmp_path):
    import base64

    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "a.png").write_bytes(b"x" * 10)
    (tmp_path / "secret").write_bytes(b"s")
    assert read_capped_file(str(tmp_path / "root"), "a.png", 10) == b"x" * 10
    for rel, status in [("../secret", 403), ("none.png", 404)]:
        with pytest.raises(DownloadError) as e:
            read_capped_file(str(tmp_path / "root"), rel, 10)
        assert e.value.status == status
    with pytest.raises(DownloadError, match="over the 9 limit") as e:
        read_capped_file(str(tmp_path / "root"), "a.png", 9)
    assert e.value.status == 413
    url = "data:image/png;base64," + base64.b64encode(b"y" * 30).decode()
    assert data_url_bytes(url, 100) == b"y" * 30
    for ref, limit, status in [(url, 10, 413), ("data:text/plain;base64,eHk=", 100, 422), ("data:image/png;base64,@@", 100, 422)]:
        with pytest.raises(DownloadError) as e:
            data_url_bytes(ref, limit)
        assert e.value.status == status


@pytest.mark.parametrize("raw, message", [
    (None, "is empty"), ("  ", "is empty"), ("<View>" + "x" * 90 + "</View>", "larger than 90 characters"),
    ('<!DOCTYPE v [<!ENTITY e SYSTEM "file:///etc/passwd">]><View>&e;</View>', "DOCTYPE or ENTITY"),
    ('<!entity e "x"><View/>', "DOCTYPE or ENTITY")])
def test_xml_text_refuses_what_an_xml_parser_should_never_see(raw, message):
    from ovsam_core import xml_text

    with pytest.raises(ValueError, match=f"the config {message}" if "is empty" in message else message):
        xml_text(raw, "the config", max_chars=90)
    assert xml_text("<View/>", "the config") == "<View/>"
