"""Evaluation: metrics by hand on a tiny case, centre points, `ovsam eval` end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ovsam_core.evaluation import InstanceResult, coco_mask_ap, evaluate, mask_iou, summarize_table1
from ovsam_core.evaluation.methods import Method
from ovsam_core.evaluation.prompts import center_point_in_frame, center_points
from ovsam_core.geometry import center_point
from ovsam_core.training.data import CocoInstances, decode_segmentation


def test_mask_iou_and_table1_summary_by_hand():
    a = np.zeros((4, 4), bool)
    a[:2] = True                                        # 8 px
    b = np.zeros((4, 4), bool)
    b[1:3] = True                                       # 8 px, 4 shared
    assert mask_iou(a, b) == pytest.approx(4 / 12)
    assert mask_iou(a, a) == 1.0 and mask_iou(a, ~a) == 0.0 and mask_iou(a & ~a, a & ~a) == 0.0
    rows = [InstanceResult(1, 1, 1, 0, "base", "box", 0, 0.9, 0.5),
            InstanceResult(1, 2, 2, 1, "base", "box", 0, 0.6, 1.0),
            InstanceResult(2, 3, 3, 2, "novel", "box", 2, 0.7, 0.25),
            InstanceResult(2, 3, 3, 2, "novel", "point", 1, 0.7, 0.1)]
    s = summarize_table1(rows)
    assert s["box"]["miou"] == pytest.approx((0.5 + 1.0 + 0.25) / 3)
    assert s["box"]["miou_base"] == pytest.approx(0.75) and s["box"]["miou_novel"] == pytest.approx(0.25)
    assert s["box"]["acc"] == pytest.approx(2 / 3) and s["box"]["acc_base"] == 0.5 and s["box"]["acc_novel"] == 1.0
    assert s["point"]["n"] == 1 and s["point"]["acc"] == 0.0 and s["point"]["miou_base"] is None


def _tiny_dataset(tmp_path):
    """2 images, 3 instances: class 'a' (base, id 10) and 'b' (novel, id 20)."""
    (tmp_path / "img").mkdir()
    for i in (1, 2):
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(tmp_path / "img" / f"{i}.png")
    anns = [
        {"id": 1, "image_id": 1, "category_id": 10, "iscrowd": 0, "area": 40.0, "bbox": [2, 2, 10, 4],
         "segmentation": [[2, 2, 12, 2, 12, 6, 2, 6]]},
        {"id": 2, "image_id": 1, "category_id": 20, "iscrowd": 0, "area": 36.0, "bbox": [20, 10, 6, 6],
         "segmentation": [[20, 10, 26, 10, 26, 16, 20, 16]]},
        {"id": 3, "image_id": 2, "category_id": 10, "iscrowd": 0, "area": 100.0, "bbox": [0, 0, 10, 10],
         "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
    ]
    doc = {"images": [{"id": 1, "file_name": "1.png", "height": 20, "width": 30},
                      {"id": 2, "file_name": "2.png", "height": 20, "width": 30}],
           "annotations": anns,
           "categories": [{"id": 10, "name": "a", "split": "base"}, {"id": 20, "name": "b", "split": "novel"}]}
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    return CocoInstances(tmp_path / "ann.json", tmp_path / "img")


class FixedMethod(Method):
    """Predicts the left half of each prompt box; class 'a' for everything."""

    name = "fixed"

    def set_image(self, rgb):
        self.hw = rgb.shape[:2]

    def predict(self, boxes=None, points=None, clip_boxes=None):
        boxes = clip_boxes                                 # the GT boxes in both prompt modes
        masks = np.zeros((len(boxes),) + self.hw, bool)
        for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
            masks[i, y0:y1, x0:(x0 + x1) // 2] = True
        probs = np.tile(np.array([[0.8, 0.2]], np.float32), (len(boxes), 1))
        return masks, probs


def test_evaluate_against_hand_computed_numbers(tmp_path):
    ds = _tiny_dataset(tmp_path)
    gts = [decode_segmentation(a["segmentation"], 20, 30) for r in ds.records for a in r.anns]
    assert [int(g.sum()) for g in gts] == [40, 36, 100]   # COCO rasterises these rectangles exactly
    res = evaluate(ds, [FixedMethod()], prompts=("box", "point"), point_frame=32, out_dir=tmp_path / "out",
                   progress=False)
    t = res["methods"]["fixed"]["table1"]
    # half of each rectangle -> IoU 0.5 for every instance; class 'a' predicted: right for 1 and 3 (base)
    assert t["box"]["miou"] == pytest.approx(0.5) and t["box"]["miou_base"] == pytest.approx(0.5)
    assert t["box"]["acc_base"] == 1.0 and t["box"]["acc_novel"] == 0.0 and t["box"]["acc"] == pytest.approx(2 / 3)
    assert t["point"] == t["box"]
    rows = [json.loads(x) for x in (tmp_path / "out" / "predictions_fixed.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {r["prompt"] for r in rows} == {"box", "point"}
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| fixed | 50.0 | 50.0 | 50.0 | 100.0 | 0.0 | 66.7 | 3 |" in md


def test_coco_ap_perfect_and_wrong_class(tmp_path):
    from pycocotools import mask as mu

    ds = _tiny_dataset(tmp_path)
    gt = json.loads((tmp_path / "ann.json").read_text())
    res = []
    for r in ds.records:
        for a in r.anns:
            m = decode_segmentation(a["segmentation"], r.height, r.width)
            rle = mu.encode(np.asfortranarray(m.astype(np.uint8)))
            res.append({"image_id": r.id, "category_id": a["category_id"], "score": 0.9,
                        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    ap = coco_mask_ap(gt, res, [10], [20])
    assert ap["AP"] == pytest.approx(1.0)
    assert ap["AP_base"] == pytest.approx(1.0) and ap["AP_novel"] == pytest.approx(1.0)
    for r in res:
        r["category_id"] = 10                            # the novel instance mislabelled
    ap = coco_mask_ap(gt, res, [10], [20])
    assert ap["AP_novel"] == 0.0 and ap["AP_base"] < 1.0


def test_center_points_match_the_core_geometry():
    rng = np.random.default_rng(0)
    for _ in range(12):
        m = np.zeros((40, 50), bool)
        for _k in range(int(rng.integers(1, 4))):
            y, x = rng.integers(0, 40), rng.integers(0, 50)
            m[max(0, y - 6):y + int(rng.integers(2, 12)), max(0, x - 5):x + int(rng.integers(2, 14))] = True
        assert center_point_in_frame(m, 64) == center_point(m, pad_to=(64, 64))
    m = np.zeros((40, 50), bool)
    m[30:40, 40:50] = True                               # touching the bottom-right border
    assert center_point_in_frame(m, 50) == center_point(m, pad_to=(50, 50))
    pts = center_points(np.stack([m, m]), 100)           # original pixels (frame 100 = 2x)
    assert pts.shape == (2, 2) and 40 <= pts[0, 0] < 50 and 30 <= pts[0, 1] < 40


def test_ovsam_eval_cli_model_and_baselines(trained, synth, tmp_path):
    """`ovsam eval` on the synthetic set: Table 1 and Table 2 for ovsam-test and both baselines; the
    reported IoU / accuracy equal those recomputed from the written per-prompt masks."""
    from ovsam_core.cli_train import main

    out = tmp_path / "eval"
    rc = main(["eval", "--images", str(synth / "images" / "val"),
               "--annotations", str(synth / "annotations" / "instances_val.json"),
               "--detections", str(synth / "detections_val.json"), "--model", "ovsam-test",
               "--weights-dir", str(trained["export"]), "--baselines", "image-crop,feature-crop",
               "--sam", "tiny", "--max-images", "6", "--out", str(out), "-q"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    names = list(res["methods"])
    assert len(names) == 3 and names[0].startswith("ovsam-test") and "Image-Crop" in names[1] \
        and "Feature-Crop" in names[2]
    ds = CocoInstances(synth / "annotations" / "instances_val.json", synth / "images" / "val")
    gt = {a["id"]: (decode_segmentation(a["segmentation"], r.height, r.width), ds.cat_index[a["category_id"]])
          for r in ds.records[:6] for a in r.anns}
    from pycocotools import mask as mu
    from ovsam_core.evaluation.runner import _safe
    for name, entry in res["methods"].items():
        pred_file = out / f"predictions_{_safe(name)}.jsonl"
        rows = [json.loads(x) for x in pred_file.read_text().splitlines()]
        for prompt in ("box", "point"):
            sel = [r for r in rows if r["prompt"] == prompt]
            assert len(sel) == len(gt)
            ious, correct = [], []
            for r in sel:
                m = mu.decode({"size": r["mask"]["size"], "counts": r["mask"]["counts"].encode()}).astype(bool)
                g, label = gt[r["ann_id"]]
                inter, union = np.logical_and(m, g).sum(), np.logical_or(m, g).sum()
                ious.append(inter / union if union else 0.0)
                correct.append(r["pred_label"] == label)
            t1 = entry["table1"][prompt]
            assert t1["miou"] == pytest.approx(float(np.mean(ious)), abs=1e-9)
            assert t1["acc"] == pytest.approx(float(np.mean(correct)), abs=1e-9)
        t2 = entry["table2"]
        assert set(t2) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP_base", "AP_novel"}
        assert t2["num_detections"] > 0 and 0.0 <= t2["AP"] <= 1.0
        assert (out / f"detections_{_safe(name)}.json").is_file()
    md = (out / "results.md").read_text()
    assert "Table 1 — box prompts" in md and "Table 2" in md and "Feature-Crop" in md
    # the trained model beats the random-init baselines on the synthetic set
    ov = res["methods"][names[0]]["table1"]["box"]
    assert ov["miou"] > res["methods"][names[1]]["table1"]["box"]["miou"]


def test_fused_mode_both_clip_box_frames(synth):
    from ovsam_core.evaluation import run_eval

    out = {}
    for frame in ("original", "model"):
        res = run_eval(synth / "images" / "val", synth / "annotations" / "instances_val.json", model="ovsam-test",
                       mode="fused", clip_box_frame=frame, max_images=3, progress=False)
        (name, entry), = res["methods"].items()
        assert name == "ovsam-test (fused)"
        out[frame] = entry["table1"]
        assert out[frame]["box"]["n"] == out[frame]["point"]["n"] > 0
    # same masks either way; only the frozen-CLIP RoIs differ
    assert out["original"]["box"]["miou"] == out["model"]["box"]["miou"]
