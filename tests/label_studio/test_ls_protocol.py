"""The ML-backend protocol with the Flask test client, on JSON recorded from Label Studio 1.23.2.

Decoded outputs are compared with what :class:`ovsam_core.Predictor` returns for the same prompts.
"""
from __future__ import annotations

from ls_fixtures import *  # noqa: F401,F403 - fixtures (and the skip without the label-studio extra)

import json
import logging
import sys

import numpy as np
import pytest

from ovsam_core import Prompt, load_image
from ovsam_plugins.label_studio.regions import polygon_mask

from ls_helpers import (LABELS, SHAPES, annotation, brush_rle_to_mask, config_xml, keypoint, ls_task, predict_body,
                        rectangle, webhook_body)

W, H = 480, 360


def regions_of(resp, kind=None):
    res = resp.get_json()["results"][0]["result"]
    return [r for r in res if kind is None or r["type"] == kind]


def expected(predictor, prompts, labels=LABELS):
    return predictor.predict(load_image(str(SHAPES)), prompts, vocabulary=list(labels), top_k=len(labels))


def polygons_mask(regs, w=W, h=H):
    m = np.zeros((h, w), bool)
    for r in regs:
        m |= polygon_mask(r["value"]["points"], w, h)
    return m


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def check_polygons(regs, mask):
    """Polygons lie on the mask: the random-weight test model's masks are many small blobs, of
    which the polygons keep the largest (exact tracing is tested in test_outputs)."""
    pm = polygons_mask(regs)
    assert pm.any()
    assert (pm & mask).sum() / pm.sum() > 0.8
    for r in regs:
        one = polygon_mask(r["value"]["points"], W, H)
        assert (one & mask).sum() / max(one.sum(), 1) > 0.6


def check_region_common(r, config_labels=LABELS):
    assert r["original_width"] == W and r["original_height"] == H
    labs = r["value"][r["type"]]
    assert len(labs) == 1 and labs[0] in config_labels
    assert 0.0 <= r["score"] <= 1.0
    assert r["meta"]["top_k"][0]["label"] == labs[0]
    assert r["meta"]["text"][0].startswith("ovsam: ")


# ------------------------------------------------------------------------------------- health, setup
def test_health_and_root_do_not_load_the_model(client_for):
    client, backend = client_for()
    for path in ("/health", "/"):
        r = client.get(path)
        assert r.status_code == 200 and r.is_json
        assert r.get_json()["status"] == "UP" and r.get_json()["model_class"] == "ovsam"
    assert r.get_json()["model_loaded"] is True  # the injected predictor counts as loaded


def test_setup_recorded(client, recorded):
    r = client.post("/setup", json=recorded("setup"))
    assert r.status_code == 200
    assert r.get_json()["model_version"].startswith("ovsam-ovsam-test-")
    assert client.get("/versions").get_json()["versions"] == [r.get_json()["model_version"]]


@pytest.mark.parametrize("schema", ["<View><Text name='t' value='$text'/></View>", "<View", "",
                                    '<!DOCTYPE x [<!ENTITY a "b">]><View/>'])
def test_setup_unusable_config_is_400(client, schema):
    r = client.post("/setup", json={"project": "1.1", "schema": schema or " "})
    assert r.status_code == 400 and r.is_json
    assert r.get_json()["error"]


def test_validate(client):
    assert client.post("/validate", json={"config": config_xml()}).status_code == 200
    assert client.post("/validate", json={"config": "<View/>"}).status_code == 400


# ------------------------------------------------------------------------------------- interactive
def test_interactive_recorded_keypoint(client, recorded, predictor):
    body = recorded("predict-interactive")
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.get_json()
    out = r.get_json()
    assert len(out["results"]) == 1 and out["model_version"] == out["results"][0]["model_version"]
    kp = body["params"]["context"]["result"][0]["value"]
    want = expected(predictor, [Prompt.from_points([(kp["x"] * W / 100, kp["y"] * H / 100)])]).objects[0]
    brushes = regions_of(r, "brushlabels")
    polys = regions_of(r, "polygonlabels")
    assert len(brushes) == 1 and polys
    assert not regions_of(r, "rectanglelabels")  # the smart RectangleLabels is a prompt here
    np.testing.assert_array_equal(brush_rle_to_mask(brushes[0]["value"]["rle"], H, W), want.mask)
    check_polygons(polys, want.mask)
    for reg in brushes + polys:
        check_region_common(reg)
        assert reg["from_name"] in ("brush", "poly") and reg["to_name"] == "image"
    assert out["results"][0]["score"] == pytest.approx(brushes[0]["score"], abs=1e-6)


def test_interactive_box_with_positive_and_negative_clicks(client, predictor):
    cfg = config_xml()
    box = (250, 140, 430, 310)
    ctx = {"result": [rectangle(box, W, H), keypoint(330, 220, W, H, rid="a"),
                      keypoint(300, 60, W, H, positive=False, rid="b")]}
    r = client.post("/predict", json=predict_body([ls_task()], cfg, ctx))
    assert r.status_code == 200, r.get_json()
    rect = ctx["result"][0]["value"]
    px = [(v["value"]["x"] * W / 100, v["value"]["y"] * H / 100) for v in ctx["result"][1:]]
    prompt = Prompt(points=tuple(px), labels=(1, 0),
                    box=(rect["x"] * W / 100, rect["y"] * H / 100, (rect["x"] + rect["width"]) * W / 100,
                         (rect["y"] + rect["height"]) * H / 100))
    want = expected(predictor, [prompt]).objects[0]
    np.testing.assert_array_equal(brush_rle_to_mask(regions_of(r, "brushlabels")[0]["value"]["rle"], H, W), want.mask)
    rects = regions_of(r, "rectanglelabels")
    assert len(rects) == 1 and rects[0]["from_name"] == "box"
    v = rects[0]["value"]
    x0, y0, x1, y1 = want.bbox_xyxy
    assert (v["x"], v["y"], v["width"], v["height"]) == pytest.approx(
        (100 * x0 / W, 100 * y0 / H, 100 * (x1 - x0) / W, 100 * (y1 - y0) / H), abs=1e-3)
    assert regions_of(r, "brushlabels")[0]["value"]["brushlabels"][0] == want.label


def test_interactive_only_negative_clicks_gives_empty_result(client):
    ctx = {"result": [keypoint(100, 100, W, H, positive=False)]}
    r = client.post("/predict", json=predict_body([ls_task()], config_xml(), ctx))
    assert r.status_code == 200 and r.get_json()["results"][0]["result"] == []


def test_interactive_label_source_smart(client_for):
    client, _ = client_for(label_source="smart")
    for lab in LABELS:
        ctx = {"result": [keypoint(130, 150, W, H, label=lab)]}
        regs = regions_of(client.post("/predict", json=predict_body([ls_task()], config_xml(), ctx)))
        assert regs and {r["value"][r["type"]][0] for r in regs} == {lab}


def test_embeddings_are_cached_per_image(client_for, docroot, predictor):
    from PIL import Image

    Image.open(SHAPES).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(docroot / "flipped.png")
    client, backend = client_for()
    predictor.cache.clear()
    calls = predictor.encoder_calls
    for image in ("shapes.png", "flipped.png", "shapes.png", "flipped.png"):
        ctx = {"result": [keypoint(130, 150, W, H)]}
        task = ls_task(image=f"/data/local-files/?d={image}")
        assert client.post("/predict", json=predict_body([task], config_xml(), ctx)).status_code == 200
    assert predictor.encoder_calls - calls == 2  # two images, each encoded once
    m = client.get("/metrics").get_json()
    assert m["embedding_cache"]["entries"] >= 2 and m["counters"]["interactive_requests"] == 4


# ------------------------------------------------------------------------------------- batch
def test_batch_recorded_prompts_from_annotation(client, recorded, predictor):
    body = recorded("predict-batch")
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.get_json()
    ann = body["tasks"][0]["annotations"][0]["result"]
    rect = ann[0]["value"]
    kp = ann[1]["value"]
    want = expected(predictor, [
        Prompt.from_box(rect["x"] * W / 100, rect["y"] * H / 100, (rect["x"] + rect["width"]) * W / 100,
                        (rect["y"] + rect["height"]) * H / 100),
        Prompt.from_points([(kp["x"] * W / 100, kp["y"] * H / 100)])])
    brushes = regions_of(r, "brushlabels")
    assert len(brushes) == 2
    for reg, obj in zip(brushes, want.objects):
        np.testing.assert_array_equal(brush_rle_to_mask(reg["value"]["rle"], H, W), obj.mask)
        check_region_common(reg)
    assert regions_of(r, "polygonlabels")


@pytest.mark.parametrize("output", ["brush", "polygon", "rectangle"])
def test_batch_each_output_type(client, predictor, output):
    cfg = config_xml(outputs=(output,))
    box = (50, 70, 210, 230)
    task = ls_task(annotations=[annotation([rectangle(box, W, H)])])
    r = client.post("/predict", json=predict_body([task], cfg))
    assert r.status_code == 200, r.get_json()
    regs = regions_of(r)
    types = {reg["type"] for reg in regs}
    assert types == {f"{output}labels"}
    v = rectangle(box, W, H)["value"]
    obj = expected(predictor, [Prompt.from_box(v["x"] * W / 100, v["y"] * H / 100, (v["x"] + v["width"]) * W / 100,
                                               (v["y"] + v["height"]) * H / 100)]).objects[0]
    if output == "brush":
        np.testing.assert_array_equal(brush_rle_to_mask(regs[0]["value"]["rle"], H, W), obj.mask)
    elif output == "polygon":
        assert all(reg["value"]["closed"] and len(reg["value"]["points"]) >= 3 for reg in regs)
        check_polygons(regs, obj.mask)
    else:
        x0, y0, x1, y1 = obj.bbox_xyxy
        assert regs[0]["value"]["x"] == pytest.approx(100 * x0 / W, abs=1e-3)
        assert regs[0]["value"]["width"] == pytest.approx(100 * (x1 - x0) / W, abs=1e-3)
    for reg in regs:
        check_region_common(reg)


def test_batch_uses_other_models_predictions_not_its_own(client_for):
    client = client_for(auto="off")[0]
    cfg = config_xml(outputs=("rectangle",))
    theirs = {"id": 7, "model_version": "yolo-v8", "result": [rectangle((50, 70, 210, 230), W, H, from_name="box")]}
    ours = {"id": 8, "model_version": "ovsam-ovsam-test-labels-0.1.0",
            "result": [rectangle((0, 0, 100, 100), W, H, from_name="box"), rectangle((200, 0, 300, 100), W, H, from_name="box")]}
    r = client.post("/predict", json=predict_body([ls_task(predictions=[ours, theirs])], cfg))
    assert len(regions_of(r)) == 1
    r = client.post("/predict", json=predict_body([ls_task(predictions=[ours])], cfg))
    assert "result" not in r.get_json()["results"][0]  # its own earlier prediction is no prompt


def test_batch_without_prompts_stores_nothing_and_logs_why(client_for, caplog):
    """No "result" key: Label Studio stores no empty prediction (which would stop later retrievals);
    here pre-labelling is off (OVSAM_LS_AUTO=off), see test_ls_prelabel.py for the default."""
    client = client_for(auto="off")[0]
    with caplog.at_level(logging.INFO, logger="ovsam.label_studio"):
        r = client.post("/predict", json=predict_body([ls_task(task_id=5)], config_xml()))
    assert r.status_code == 200
    (res,) = r.get_json()["results"]
    assert "result" not in res and res["task"] == 5 and "nothing to segment" in res["error"]
    assert any("task 5" in m and "nothing to segment" in m for m in caplog.messages)


def test_batch_one_bad_task_does_not_fail_the_others(client, docroot):
    (docroot / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    good = ls_task(1, annotations=[annotation([rectangle((50, 70, 210, 230), W, H)])])
    missing = ls_task(2, image="/data/local-files/?d=nope.png", annotations=good["annotations"])
    corrupt = ls_task(3, image="/data/local-files/?d=corrupt.png", annotations=good["annotations"])
    escape = ls_task(4, image="/data/local-files/?d=../../etc/passwd", annotations=good["annotations"])
    r = client.post("/predict", json=predict_body([good, missing, corrupt, escape, good], config_xml()))
    assert r.status_code == 200
    res = r.get_json()["results"]
    assert len(res) == 5
    assert res[0]["result"] and res[4]["result"]
    for bad in res[1:4]:
        assert "result" not in bad and bad["error"]  # Label Studio logs and skips such items
    assert "not found" in res[1]["error"] and "unreadable" in res[2]["error"] and "refused" in res[3]["error"]


def test_batch_unexpected_errors_stay_in_their_task(client_for, monkeypatch):
    client, backend = client_for()
    real = backend._image_for

    def flaky(task, cfg, to_name):
        if task["id"] == 2:
            raise RuntimeError("boom")
        return real(task, cfg, to_name)

    monkeypatch.setattr(backend, "_image_for", flaky)
    anns = [annotation([rectangle((50, 70, 210, 230), W, H)])]
    r = client.post("/predict", json=predict_body([ls_task(1, annotations=anns), ls_task(2, annotations=anns)], config_xml()))
    res = r.get_json()["results"]
    assert r.status_code == 200 and res[0]["result"] and "internal error (RuntimeError)" in res[1]["error"]
    assert "boom" not in r.get_data(as_text=True)


# ------------------------------------------------------------------------------------- labels
def test_labels_map_through_predicted_values_with_a_preset_vocabulary(client_for):
    client, _ = client_for(vocab="coco")
    lab = ('<Label value="Kitty" predicted_values="cat"/><Label value="Doggo" predicted_values="dog, puppy"/>'
           '<Label value="CAR"/><Label value="Unicorn"/>')
    cfg = (f'<View><Image name="image" value="$image"/><KeyPointLabels name="kp" toName="image" smart="true">{lab}'
           f'</KeyPointLabels><BrushLabels name="brush" toName="image">{lab}</BrushLabels></View>')
    seen = set()
    for x, y in ((130, 150), (330, 90), (340, 230), (40, 40)):
        r = client.post("/predict", json=predict_body([ls_task()], cfg, {"result": [keypoint(x, y, W, H, label="Kitty")]}))
        assert r.status_code == 200, r.get_json()
        for reg in regions_of(r):
            seen.add(reg["value"]["brushlabels"][0])
            assert {t["label"] for t in reg["meta"]["top_k"]} <= {"Kitty", "Doggo", "CAR"}
            assert len(reg["meta"]["vocabulary_top_k"]) == 5  # the raw COCO alternatives
    assert seen and seen <= {"Kitty", "Doggo", "CAR"}  # Unicorn maps to no COCO class


def test_alias_is_what_results_carry(client):
    lab = '<Label value="circle" alias="C"/><Label value="square" alias="S"/>'
    cfg = (f'<View><Image name="image" value="$image"/><KeyPointLabels name="kp" toName="image" smart="true">{lab}'
           f'</KeyPointLabels><BrushLabels name="brush" toName="image">{lab}</BrushLabels></View>')
    r = client.post("/predict", json=predict_body([ls_task()], cfg, {"result": [keypoint(130, 150, W, H, label="C")]}))
    assert regions_of(r)[0]["value"]["brushlabels"][0] in ("C", "S")


def test_dynamic_labels_from_task_data(client):
    cfg = ('<View><Image name="image" value="$image"/><KeyPointLabels name="kp" toName="image" smart="true">'
           '<Label value="object"/></KeyPointLabels><BrushLabels name="brush" toName="image" value="$classes"/></View>')
    task = ls_task(classes=[{"value": "ball"}, "box", {"value": "pyramid", "predicted_values": "triangle"}])
    r = client.post("/predict", json=predict_body([task], cfg, {"result": [keypoint(130, 150, W, H, label="object")]}))
    assert r.status_code == 200, r.get_json()
    assert regions_of(r)[0]["value"]["brushlabels"][0] in ("ball", "box", "pyramid")
    task = ls_task()  # no labels in the task: a 422 saying why
    r = client.post("/predict", json=predict_body([task], cfg, {"result": [keypoint(130, 150, W, H, label="object")]}))
    assert r.status_code == 422 and "labels" in r.get_json()["error"]


# ------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("data,ctype", [(b"{bad json", "application/json"), (b"[1, 2]", "application/json"),
                                        (b"", "application/json"), (b"\xff\xfe", "text/plain")])
def test_malformed_bodies_are_400_json(client, data, ctype):
    r = client.post("/predict", data=data, content_type=ctype)
    assert r.status_code == 400 and r.is_json and r.get_json()["error"]


@pytest.mark.parametrize("body", [{"label_config": "<View/>"}, {"tasks": "x", "label_config": "<View/>"},
                                  {"tasks": [{"id": 1}]}])
def test_bad_predict_requests_are_400(client, body):
    r = client.post("/predict", json=body)
    assert r.status_code == 400 and r.is_json


def test_unreadable_image_in_interactive_mode_is_4xx_json(client, docroot):
    (docroot / "corrupt.png").write_bytes(b"GIF89a-broken")
    ctx = {"result": [keypoint(10, 10, W, H)]}
    for image, status in (("/data/local-files/?d=corrupt.png", 422), ("/data/local-files/?d=missing.png", 404),
                          ("/data/local-files/?d=../outside.png", 403), ("http://169.254.169.254/latest", 403)):
        r = client.post("/predict", json=predict_body([ls_task(image=image)], config_xml(), ctx))
        assert r.status_code == status and r.is_json, (image, r.get_json())
        assert "Traceback" not in r.get_data(as_text=True)


def test_region_on_an_unknown_image_is_a_400_not_an_internal_error(client):
    ctx = {"result": [{**keypoint(10, 10, W, H), "to_name": "no_such_image"}]}
    r = client.post("/predict", json=predict_body([ls_task()], config_xml(), ctx))
    assert r.status_code == 400 and "no image named 'no_such_image'" in r.get_json()["error"]


def test_body_too_large_is_413_json(client_for):
    client, _ = client_for(max_body_bytes=1000)
    r = client.post("/predict", data=json.dumps({"tasks": [], "pad": "x" * 5000}), content_type="application/json")
    assert r.status_code == 413 and r.is_json and "larger than" in r.get_json()["error"]


def test_unknown_route_and_method_are_json(client):
    r = client.get("/nope")
    assert r.status_code == 404 and r.is_json
    r = client.get("/predict")
    assert r.status_code == 405 and r.is_json


def test_internal_errors_are_500_json_without_traceback(client_for, monkeypatch):
    client, backend = client_for()

    def boom(payload):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(backend, "predict", boom)
    r = client.post("/predict", json={"tasks": []})
    assert r.status_code == 500 and r.is_json
    assert "secret" not in r.get_data(as_text=True) and "Traceback" not in r.get_data(as_text=True)


def test_basic_auth(client_for):
    import base64

    client, _ = client_for(basic_auth_user="ls", basic_auth_pass="s3cret")
    assert client.get("/health").status_code == 200  # health stays open for probes
    body = predict_body([ls_task()], config_xml(), {"result": [keypoint(130, 150, W, H)]})
    r = client.post("/predict", json=body)
    assert r.status_code == 401 and r.is_json and "Basic" in r.headers["WWW-Authenticate"]
    bad = base64.b64encode(b"ls:wrong").decode()
    assert client.post("/predict", json=body, headers={"Authorization": f"Basic {bad}"}).status_code == 401
    good = base64.b64encode(b"ls:s3cret").decode()
    assert client.post("/predict", json=body, headers={"Authorization": f"Basic {good}"}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": f"Basic {good}"}).status_code == 200


@pytest.mark.parametrize("action", ["TASKS_CREATED", "PROJECT_UPDATED", "ANNOTATION_SOMETHING_NEW"])
def test_other_webhook_actions_are_acknowledged(client_for, action):
    """Unknown actions get a 201 "ignored" and change nothing, even with a learnable annotation in
    the body; the same body as ANNOTATION_CREATED does store prototypes (the control)."""
    client, backend = client_for()
    ann = annotation([rectangle((100, 80, 220, 200), W, H, label="square", from_name="prompt_box")])
    body = webhook_body(action, ls_task(), ann, config_xml(outputs=("rectangle",)))
    r = client.post("/webhook", json=body)
    assert r.status_code == 201 and r.get_json() == {"status": "ignored", "action": action}
    m = client.get("/metrics").get_json()
    assert m["prototypes"] == {} and m["counters"] == {"webhooks": 1.0}
    assert m["embedding_cache"]["encoder_calls"] == backend.model.value.encoder_calls
    r = client.post("/webhook", json=dict(body, action="ANNOTATION_CREATED"))
    assert r.status_code == 201 and r.get_json()["prototypes"] == 1
    assert client.get("/metrics").get_json()["prototypes"] == {"1": 1}


def _vm_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_metrics(client):
    """Counters count exactly what happened; rss_bytes is this process's resident memory."""
    before = client.get("/metrics").get_json()
    assert before["counters"] == {} and before["uptime_seconds"] >= 0
    bodies = [predict_body([ls_task()], config_xml(), {"result": [keypoint(130, 150, W, H)]}),
              predict_body([ls_task()], config_xml(outputs=("rectangle",)), {"result": [keypoint(300, 100, W, H)]})]
    regions = []
    for body in bodies:
        r = client.post("/predict", json=body)
        assert r.status_code == 200
        regions.append(len(regions_of(r)))
    assert client.post("/predict", data=b"{bad json", content_type="application/json").status_code == 400
    m = client.get("/metrics").get_json()
    c = m["counters"]
    assert c["predict_requests"] == 2 and c["interactive_requests"] == 2 and c["http_400"] == 1
    assert regions[0] >= 2 and regions[1] == 1  # a brush + its polygons, then one rectangle
    assert c["regions"] == sum(regions)
    assert 0 < c["predict_seconds"] and m["uptime_seconds"] >= before["uptime_seconds"]
    assert "errors" not in c and m["model_loaded"] is True
    if sys.platform.startswith("linux"):
        rss = _vm_rss_bytes()
        assert 0.5 * rss <= m["rss_bytes"] <= 2 * rss, (m["rss_bytes"], rss)
    else:
        assert m["rss_bytes"] > 0
