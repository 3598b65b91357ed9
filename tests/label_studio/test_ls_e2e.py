"""End to end against a real Label Studio 1.23.2 server (its own venv, see .ci/setup-label-studio.sh).

Label Studio and ``ovsam label-studio serve`` (gunicorn, tiny model) run on 127.0.0.1; the test
creates a project with smart keypoint + rectangle prompts and brush + polygon outputs, imports
tasks with local-storage images, connects the backend, calls interactive annotating and
"retrieve predictions", and checks that what Label Studio stored decodes to the model's masks
and carries the project's labels. Marked ``label_studio_server`` (``pytest -m label_studio_server``;
``-m "not label_studio_server"`` leaves it out). ~30-60 s (Label Studio starts in ~5-10 s from the
pre-migrated data dir).
"""
from __future__ import annotations

from ls_fixtures import *  # noqa: F401,F403 - fixtures (and the skip without the label-studio extra)

import json
import time
import urllib.request
import warnings

import numpy as np
import pytest

from ovsam_core import Prompt, load_image
from ovsam_plugins.label_studio.regions import polygon_mask

from ls_helpers import LABELS, SHAPES, brush_rle_to_mask, config_xml
from ls_server import label_studio_with_backend, ls_available

with warnings.catch_warnings():  # registered in pyproject's markers; silence until it is
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    LABEL_STUDIO_SERVER = pytest.mark.label_studio_server

pytestmark = [
    LABEL_STUDIO_SERVER,
    pytest.mark.skipif(not ls_available(), reason="no Label Studio server venv: run .ci/setup-label-studio.sh"),
]

W, H = 480, 360
CONFIG = config_xml(outputs=("brush", "polygon")).replace(' ovsam_skip="true"', "")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with label_studio_with_backend(tmp_path_factory.mktemp("ls-e2e"), {"imgs/shapes.png": SHAPES.read_bytes()}) as both:
        yield both


def backend_metrics(be):
    with urllib.request.urlopen(be.url + "/metrics", timeout=30) as r:
        return json.loads(r.read())


def test_label_studio_end_to_end(servers, predictor):
    ls, be = servers
    t0 = time.time()
    pid = ls.api("POST", "/api/projects", {"title": "ovsam e2e", "label_config": CONFIG})["id"]
    ls.api("POST", "/api/storages/localfiles", {"project": pid, "path": str(ls.files_root / "imgs"),
                                                "use_blob_urls": True, "title": "images"})
    ls.api("POST", f"/api/projects/{pid}/import", [
        {"data": {"image": "/data/local-files/?d=imgs/shapes.png"}},
        {"data": {"image": "/data/local-files/?d=imgs/missing.png"}},
    ])
    tasks = ls.api("GET", f"/api/tasks?project={pid}")["tasks"]
    good, bad = sorted(tasks, key=lambda t: t["id"])
    ml = ls.api("POST", "/api/ml", {"url": be.url, "project": pid, "title": "ovsam", "is_interactive": True})
    assert ml["state"] == "CO", ml  # connected: /health and /setup answered
    assert ml["model_version"].startswith("ovsam-ovsam-test-")
    image = load_image(str(SHAPES))

    # ---- interactive: a smart keypoint on the red disc
    ctx = {"result": [{"original_width": W, "original_height": H, "image_rotation": 0,
                       "value": {"x": 27.0, "y": 42.0, "width": 0.5, "keypointlabels": ["circle"]},
                       "is_positive": True, "id": "kp1", "from_name": "kp", "to_name": "image",
                       "type": "keypointlabels", "origin": "manual"}]}
    out = ls.api("POST", f"/api/ml/{ml['id']}/interactive-annotating", {"task": good["id"], "context": ctx})
    regions = out["data"]["result"]
    want = predictor.predict(image, [Prompt.from_points([(27.0 * W / 100, 42.0 * H / 100)])],
                             vocabulary=list(LABELS), top_k=3).objects[0]
    brush = [r for r in regions if r["type"] == "brushlabels"]
    assert len(brush) == 1
    np.testing.assert_array_equal(brush_rle_to_mask(brush[0]["value"]["rle"], H, W), want.mask)
    assert all(r["value"][r["type"]][0] in LABELS for r in regions)
    assert {r["type"] for r in regions} == {"brushlabels", "polygonlabels"}

    # ---- an annotator draws a labelled box: the webhook teaches the backend a prototype
    box_value = {"x": 54.1667, "y": 41.6667, "width": 33.3333, "height": 41.6667, "rotation": 0,
                 "rectanglelabels": ["square"]}
    ls.api("POST", f"/api/tasks/{good['id']}/annotations", {"result": [
        {"id": "r1", "from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": W,
         "original_height": H, "image_rotation": 0, "value": box_value}]})
    ls.api("POST", f"/api/tasks/{bad['id']}/annotations", {"result": [
        {"id": "r2", "from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": W,
         "original_height": H, "image_rotation": 0, "value": box_value}]})
    end = time.time() + 60
    while time.time() < end and backend_metrics(be).get("prototypes", {}).get(str(pid), 0) < 1:
        time.sleep(0.5)
    assert backend_metrics(be)["prototypes"][str(pid)] == 1  # the good task's box (the bad image is unreadable)

    # ---- batch: "Retrieve predictions" for both tasks; the bad one must not fail the good one
    r = ls.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
               {"selectedItems": {"all": True, "excluded": []}})
    assert r.get("processed_items") == 2, r
    assert ls.api("GET", f"/api/predictions?task={bad['id']}") == []
    preds = ls.api("GET", f"/api/predictions?task={good['id']}")
    assert len(preds) == 1
    pred = preds[0]
    assert pred["model_version"] == ml["model_version"] and 0 < pred["score"] <= 1
    box = (box_value["x"] * W / 100, box_value["y"] * H / 100, (box_value["x"] + box_value["width"]) * W / 100,
           (box_value["y"] + box_value["height"]) * H / 100)
    want = predictor.predict(image, [Prompt.from_box(*box)], vocabulary=list(LABELS), top_k=3).objects[0]
    stored = pred["result"]
    brush = [r for r in stored if r["type"] == "brushlabels"]
    polys = [r for r in stored if r["type"] == "polygonlabels"]
    assert len(brush) == 1 and polys
    np.testing.assert_array_equal(brush_rle_to_mask(brush[0]["value"]["rle"], H, W), want.mask)
    for p in polys:
        pm = polygon_mask(p["value"]["points"], W, H)
        assert (pm & want.mask).sum() / pm.sum() > 0.6
    for reg in stored:
        assert reg["value"][reg["type"]][0] in LABELS and reg["from_name"] in ("brush", "poly")
        # what Label Studio keeps of a region: per-region score and meta (top-k) are stored as sent
        assert 0 <= reg["score"] <= 1
        assert reg["meta"]["top_k"][0]["label"] == reg["value"][reg["type"]][0]
        assert reg["meta"]["text"][0].startswith("ovsam: ")
    print(f"label studio e2e: {time.time() - t0:.1f} s after the servers were up")


def test_uploaded_image_with_legacy_token_and_personal_access_token(servers, tmp_path):
    """The backend reads /data/upload/... images from Label Studio with either kind of API key."""
    import io
    import uuid

    from ovsam_plugins.label_studio.fetch import ImageFetcher, ImageFetchError
    from ovsam_plugins.label_studio.settings import settings_from_env

    ls, _ = servers
    pid = ls.api("POST", "/api/projects", {"title": "uploads", "label_config": CONFIG})["id"]
    boundary = uuid.uuid4().hex
    payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"shapes.png\"\r\n"
               f"Content-Type: image/png\r\n\r\n").encode() + SHAPES.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{ls.url}/api/projects/{pid}/import", data=payload, method="POST", headers={
        "Authorization": f"Token {ls.token}", "Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status in (200, 201)
    task = ls.api("GET", f"/api/tasks?project={pid}")["tasks"][0]
    ref = task["data"]["image"]
    assert ref.startswith("/data/upload/")
    legacy = ImageFetcher(settings_from_env({}, label_studio_url=ls.url, api_key=ls.token))
    assert legacy.fetch(ref, task["id"]) == SHAPES.read_bytes()
    # personal access tokens (JWT refresh tokens) are exchanged for access tokens
    ls.api("POST", "/api/jwt/settings", {"api_tokens_enabled": True, "legacy_api_tokens_enabled": True})
    pat = ls.api("POST", "/api/token/", {})["token"]
    assert pat.startswith("eyJ")
    jwt = ImageFetcher(settings_from_env({}, label_studio_url=ls.url, api_key=pat))
    assert jwt.fetch(ref, task["id"]) == SHAPES.read_bytes()
    with pytest.raises(ImageFetchError, match="LABEL_STUDIO_API_KEY"):
        ImageFetcher(settings_from_env({}, label_studio_url=ls.url, api_key="wrong-token")).fetch(ref, task["id"])
