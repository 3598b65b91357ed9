"""Load: 200 ``/predict`` requests from 8 concurrent clients against ``ovsam label-studio serve``
(gunicorn, one worker, 8 threads, 127.0.0.1) -> no errors, bounded worker memory.

Bounded in count (200 requests) and time (each request times out after 60 s, the whole run
after 180 s).
"""
from __future__ import annotations

from ls_fixtures import *  # noqa: F401,F403 - fixtures (and the skip without the label-studio extra)

import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from ls_helpers import SHAPES, annotation, config_xml, keypoint, ls_task, predict_body, rectangle
from ls_server import start_backend, stop

W, H = 480, 360
N_REQUESTS, N_CLIENTS = 200, 8
RSS_GROWTH_LIMIT = 200 * 1024 ** 2


def post(url: str, body: dict, timeout: float = 60):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read())


def get(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def test_200_requests_from_8_clients(tmp_path):
    pytest.importorskip("gunicorn")
    files = tmp_path / "files"
    files.mkdir()
    Image.open(SHAPES).save(files / "a.png")
    Image.open(SHAPES).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(files / "b.png")
    be = start_backend(tmp_path, {"MODEL_DIR": str(tmp_path / "model"), "LOCAL_FILES_DOCUMENT_ROOT": str(files)},
                       ["--model", "ovsam-test", "--device", "cpu", "--threads", str(N_CLIENTS), "--log-level", "warning"])
    try:
        cfg = config_xml()
        bodies = []
        for i in range(N_REQUESTS):
            image = f"/data/local-files/?d={'ab'[i % 2]}.png"
            x, y = 40 + (i * 37) % 400, 30 + (i * 53) % 300
            if i % 4 == 3:  # batch: two boxes from an annotation
                task = ls_task(i, image=image, annotations=[annotation([
                    rectangle((x // 2, y // 2, x // 2 + 60, y // 2 + 50), W, H, rid="a"),
                    rectangle((200, 100, 300, 200), W, H, rid="b")])])
                bodies.append(predict_body([task], cfg))
            else:  # interactive click
                bodies.append(predict_body([ls_task(i, image=image)], cfg, {"result": [keypoint(x, y, W, H)]}))
        for b in bodies[:8]:  # warm up: model, both embeddings, classifier
            assert post(be.url + "/predict", b)[0] == 200
        rss0 = get(be.url + "/metrics")["rss_bytes"]
        errors, lock = [], threading.Lock()
        t0 = time.time()

        def one(body):
            if time.time() - t0 > 180:
                raise TimeoutError("load test over its time budget")
            try:
                status, out = post(be.url + "/predict", body)
                assert status == 200 and len(out["results"]) == 1 and out["results"][0]["result"], out
            except Exception as e:  # noqa: BLE001 - counted below
                with lock:
                    errors.append(repr(e)[:300])

        with ThreadPoolExecutor(N_CLIENTS) as pool:
            list(pool.map(one, bodies))
        elapsed = time.time() - t0
        m = get(be.url + "/metrics")
        print(f"load: {N_REQUESTS} requests, {N_CLIENTS} clients, {elapsed:.1f} s "
              f"({N_REQUESTS / elapsed:.1f} req/s); worker RSS {rss0 / 2**20:.0f} -> {m['rss_bytes'] / 2**20:.0f} MiB")
        assert errors == []
        assert m["counters"]["predict_requests"] == N_REQUESTS + 8
        assert m["embedding_cache"]["encoder_calls"] == 2  # each image encoded once
        assert m["rss_bytes"] - rss0 < RSS_GROWTH_LIMIT
    finally:
        stop(be.proc)
