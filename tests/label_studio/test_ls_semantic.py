"""Label Studio answers are *right*, not only well-formed: the shipped trained model ``ovsam-shapes``
on ``examples/scene.png`` (COCO ground truth in ``examples/scene.json``).

What Label Studio receives (brush RLE, polygons in percent) is decoded back to masks with the
adapter's own decoders and compared with the ground truth: each clicked / boxed object must carry
its true class name and cover its true mask with IoU >= 0.8. The prompts carry a *wrong* label on
purpose (the label the annotator had selected in the smart tool / on the box) and learning is off,
so the label in the result can only come from the model.

* ``test_flask_*``: the backend's Flask app through its test client (fast, no server);
* ``test_label_studio_server_*``: a real Label Studio 1.23.2 server and ``ovsam label-studio
  serve --model ovsam-shapes`` (marked ``label_studio_server``, like ``test_ls_e2e.py``): an
  interactive smart-keypoint click and "Retrieve predictions" from drawn boxes.
"""
from __future__ import annotations

import ls_fixtures  # noqa: F401 - skips this module without the label-studio extra

import json
import shutil
import warnings
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pytest

from ovsam_core.evaluation.metrics import mask_iou
from ovsam_core.geometry import center_point
from ovsam_core.training.data import decode_segmentation
from ovsam_plugins.label_studio.regions import polygon_mask

from ls_helpers import brush_rle_to_mask, config_xml, keypoint, ls_task, predict_body, rectangle
from ls_server import ls_available, start_backend, start_label_studio, stop

with warnings.catch_warnings():  # registered in pyproject's markers; silence until it is
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    LABEL_STUDIO_SERVER = pytest.mark.label_studio_server

REPO = Path(__file__).resolve().parents[2]
SCENE = REPO / "examples" / "scene.png"
#: the base classes of ``ovsam-shapes`` (the novel ones are never named correctly: not used)
BASE = ("red circle", "green square", "blue triangle", "yellow star", "striped ring", "checkered diamond")
CONFIG = config_xml(outputs=("brush", "polygon"), labels=BASE).replace(' ovsam_skip="true"', "")
MIN_IOU = 0.8
#: a label that is on no object of the scene: put on every prompt, it must never come back
DECOY = "blue triangle"


def scene_truth() -> Dict[str, Tuple[np.ndarray, Tuple[float, float], Tuple[float, float, float, float]]]:
    """{name: ((H, W) bool mask, centre point (x, y), box (x0, y0, x1, y1) padded by 2 px)} of scene.png."""
    doc = json.loads((REPO / "examples" / "scene.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    im = doc["images"][0]
    out = {}
    for a in doc["annotations"]:
        m = decode_segmentation(a["segmentation"], im["height"], im["width"])
        ys, xs = np.nonzero(m)
        box = (max(xs.min() - 2.0, 0.0), max(ys.min() - 2.0, 0.0),
               min(xs.max() + 3.0, im["width"]), min(ys.max() + 3.0, im["height"]))
        out[names[a["category_id"]]] = (m, center_point(m), box)
    return out


TRUTH = scene_truth()
H, W = next(iter(TRUTH.values()))[0].shape


def region_label(r) -> str:
    return r["value"][r["type"]][0]


def check_regions(regions: Sequence[dict], expected: Sequence[str]) -> List[str]:
    """Assert that ``regions`` (brush + polygon results) name and outline exactly the ``expected``
    ground-truth objects. Returns one line per object (label, IoUs) for the log."""
    brush = [r for r in regions if r["type"] == "brushlabels"]
    polys = [r for r in regions if r["type"] == "polygonlabels"]
    assert len(brush) == len(expected), [region_label(r) for r in brush]
    assert all(r["original_width"] == W and r["original_height"] == H for r in regions)
    lines = []
    for name in expected:
        gt = TRUTH[name][0]
        # the brush region of this object: the one that overlaps its ground truth most
        masks = [brush_rle_to_mask(r["value"]["rle"], H, W) for r in brush]
        ious = [mask_iou(m, gt) for m in masks]
        i = int(np.argmax(ious))
        assert region_label(brush[i]) == name, f"{name}: labelled {region_label(brush[i])!r} (IoU {ious[i]:.3f})"
        assert ious[i] >= MIN_IOU, f"{name}: brush mask IoU {ious[i]:.3f} < {MIN_IOU}"
        # its polygons: those mostly inside the ground truth; together they must outline it
        mine = []
        for p in polys:
            pm = polygon_mask(p["value"]["points"], W, H)
            if pm.sum() and (pm & gt).sum() / pm.sum() > 0.5:
                mine.append((p, pm))
        assert mine, f"{name}: no polygon region on the object"
        assert {region_label(p) for p, _ in mine} == {name}, [region_label(p) for p, _ in mine]
        union = np.logical_or.reduce([pm for _, pm in mine])
        piou = mask_iou(union, gt)
        assert piou >= MIN_IOU, f"{name}: polygon IoU {piou:.3f} < {MIN_IOU}"
        lines.append(f"{name}: brush IoU {ious[i]:.3f}, polygon IoU {piou:.3f}")
    # every polygon belongs to one of the expected objects (nothing stray, nothing mislabelled)
    for p in polys:
        pm = polygon_mask(p["value"]["points"], W, H)
        owners = [n for n in expected if (pm & TRUTH[n][0]).sum() / max(pm.sum(), 1) > 0.5]
        assert owners == [region_label(p)], (region_label(p), owners)
    return lines


def regions_of(name: str, mask: np.ndarray, label: str) -> List[dict]:
    """Brush + polygon regions of ``mask`` as the backend writes them (for the checker's own test)."""
    from ovsam_plugins.label_studio.outputs import mask_to_brush_rle, polygon_values

    base = {"original_width": W, "original_height": H}
    polys, _ = polygon_values(mask, W, H)
    return ([{**base, "type": "brushlabels", "value": {"format": "rle", "rle": mask_to_brush_rle(mask),
                                                       "brushlabels": [label]}}]
            + [{**base, "type": "polygonlabels", "value": {**pv, "polygonlabels": [label]}} for pv in polys])


def test_checker_fails_on_a_wrong_label_or_a_wrong_mask():
    """The assertions below are able to fail: a wrong name or a displaced mask is caught."""
    gt = TRUTH["green square"][0]
    check_regions(regions_of("green square", gt, "green square"), ["green square"])
    with pytest.raises(AssertionError, match="labelled 'yellow star'"):
        check_regions(regions_of("green square", gt, "yellow star"), ["green square"])
    shifted = np.roll(gt, 25, axis=1)  # the right name on a mask a quarter of the object off
    with pytest.raises(AssertionError, match="IoU"):
        check_regions(regions_of("green square", shifted, "green square"), ["green square"])


# ------------------------------------------------------------------------------- Flask test client
@pytest.fixture(scope="module")
def shapes():
    from ovsam_core import Predictor

    return Predictor("ovsam-shapes", device="cpu", dtype="fp32", progress=False)


@pytest.fixture()
def flask_client(tmp_path, shapes):
    from ovsam_plugins.label_studio import Backend, create_app, settings_from_env

    root = tmp_path / "files"
    root.mkdir()
    shutil.copy(SCENE, root / "scene.png")
    b = Backend(settings_from_env({}, model="ovsam-shapes", device="cpu", model_dir=str(tmp_path / "model"),
                                  document_root=str(root), learn=False, learn_async=False), predictor=shapes)
    try:
        yield create_app(backend=b).test_client()
    finally:
        b.close()


def post_predict(client, body) -> dict:
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.get_data(as_text=True)[:2000]
    return r.get_json()


@pytest.mark.parametrize("name", ["red circle", "striped ring", "green square", "yellow star"])
def test_flask_interactive_click_names_and_outlines_the_object(flask_client, name):
    """A smart keypoint on each object (labelled with a decoy) -> its own class and mask."""
    x, y = TRUTH[name][1]
    ctx = {"result": [keypoint(x, y, W, H, label=DECOY)]}
    out = post_predict(flask_client, predict_body([ls_task(image="/data/local-files/?d=scene.png")], CONFIG, ctx))
    regions = out["results"][0]["result"]
    if name == "striped ring":  # polygons trace outer boundaries: a ring's polygon fills its hole
        brush = [r for r in regions if r["type"] == "brushlabels"]
        assert [region_label(r) for r in brush] == [name]
        iou = mask_iou(brush_rle_to_mask(brush[0]["value"]["rle"], H, W), TRUTH[name][0])
        assert iou >= MIN_IOU, f"{name}: brush mask IoU {iou:.3f} < {MIN_IOU}"
        return
    check_regions(regions, [name])


def test_flask_retrieve_predictions_from_boxes(flask_client):
    """Batch mode: an annotation with two wrongly labelled boxes -> both objects named and outlined."""
    boxed = ["green square", "yellow star"]
    ann = {"id": 1, "result": [rectangle(TRUTH[n][2], W, H, label=DECOY, rid=f"b{i}", from_name="prompt_box")
                               for i, n in enumerate(boxed)], "was_cancelled": False,
           "updated_at": "2026-11-25T11:00:00.000000Z"}
    out = post_predict(flask_client, predict_body([ls_task(image="/data/local-files/?d=scene.png",
                                                           annotations=[ann])], CONFIG))
    res = out["results"][0]
    assert "result" in res, res
    print(check_regions(res["result"], boxed))


# ------------------------------------------------------------------------------- real server
@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    if not ls_available():
        pytest.skip("no Label Studio server venv: run .ci/setup-label-studio.sh")
    wd = tmp_path_factory.mktemp("ls-semantic")
    ls = start_label_studio(wd)
    be = None
    try:
        (ls.files_root / "imgs").mkdir()
        shutil.copy(SCENE, ls.files_root / "imgs" / "scene.png")
        be = start_backend(wd, {"LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": ls.token,
                                "MODEL_DIR": str(wd / "model")},
                           ["--model", "ovsam-shapes", "--device", "cpu", "--dtype", "fp32", "--no-learn",
                            "--log-level", "info"])
        yield ls, be
    finally:
        stop(be.proc if be else None)
        stop(ls.proc)


@LABEL_STUDIO_SERVER
def test_label_studio_server_click_and_retrieve_predictions(servers):
    """Through Label Studio: a smart click on the red circle, then "Retrieve predictions" from two
    drawn boxes; what Label Studio stored decodes to the right names and masks."""
    ls, be = servers
    pid = ls.api("POST", "/api/projects", {"title": "ovsam semantic", "label_config": CONFIG})["id"]
    ls.api("POST", "/api/storages/localfiles", {"project": pid, "path": str(ls.files_root / "imgs"),
                                                "use_blob_urls": True, "title": "images"})
    ls.api("POST", f"/api/projects/{pid}/import", [{"data": {"image": "/data/local-files/?d=imgs/scene.png"}}])
    task = ls.api("GET", f"/api/tasks?project={pid}")["tasks"][0]
    ml = ls.api("POST", "/api/ml", {"url": be.url, "project": pid, "title": "ovsam", "is_interactive": True})
    assert ml["state"] == "CO", ml
    assert ml["model_version"].startswith("ovsam-ovsam-shapes-")

    # ---- interactive: the smart keypoint tool on the red circle (decoy label selected in the tool)
    x, y = TRUTH["red circle"][1]
    ctx = {"result": [keypoint(x, y, W, H, label=DECOY)]}
    out = ls.api("POST", f"/api/ml/{ml['id']}/interactive-annotating", {"task": task["id"], "context": ctx},
                 timeout=180)
    print(check_regions(out["data"]["result"], ["red circle"]))

    # ---- an annotator draws two boxes; "Retrieve predictions" segments and names them
    boxed = ["green square", "yellow star"]
    ls.api("POST", f"/api/tasks/{task['id']}/annotations", {"result": [
        {**rectangle(TRUTH[n][2], W, H, label=DECOY, rid=f"b{i}", from_name="prompt_box"), "origin": "manual"}
        for i, n in enumerate(boxed)]})
    r = ls.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
               {"selectedItems": {"all": True, "excluded": []}}, timeout=180)
    assert r.get("processed_items") == 1, r
    preds = ls.api("GET", f"/api/predictions?task={task['id']}")
    assert len(preds) == 1, preds
    assert preds[0]["model_version"] == ml["model_version"]
    print(check_regions(preds[0]["result"], boxed))
