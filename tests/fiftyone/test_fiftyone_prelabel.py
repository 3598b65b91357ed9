"""Pre-labelling with no prompts in FiftyOne (issue 14), on a real dataset (FiftyOne's own MongoDB).

``ovsam-shapes`` labels held-out synthetic scenes (``generate_split(..., seed=1000)``, base classes
only) whose ground truth is known, through ``apply_model`` with no prompt field (everything mode:
the model's own class names) and through the ``label_everything`` operator (find mode, the classes
of the ``ground_truth`` field). Each prediction is decoded from FiftyOne's format (the mask crop in
its relative box, by FiftyOne's own ``Detection.to_segmentation``) and matched greedily with the
ground truth (``match_objects``: IoU >= 0.5 and the right label): recall >= 0.9, precision >= 0.85.
FiftyOne's ``evaluate_detections(use_masks=True, compute_mAP=True)`` then reports a high mAP, which
drops when the labels are wrong. An operator run interrupted after two samples and run again labels
every sample exactly once.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

from ovsam_core.evaluation.auto import match_objects
from test_fiftyone_semantic import BASE, EVAL_SEED, box_of, coco_truth

pytest.importorskip("fiftyone.operators")

URI = "@ovsam/ovsam"
PPS = 16          # grid of point prompts per side (as the core's own test)
N_SCENES = 6
Truth = List[Tuple[str, np.ndarray]]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> List[Tuple[Path, Truth]]:
    from ovsam_core.synthetic import generate_split

    paths = generate_split(tmp_path_factory.mktemp("fo-prelabel"), "val", N_SCENES, EVAL_SEED, classes=BASE)
    truth = coco_truth(json.loads(Path(paths["annotations"]).read_text()))
    out = [(Path(paths["images"]) / name, t) for name, t in sorted(truth.items())]
    assert sum(len(t) for _, t in out) >= 12
    return out


@pytest.fixture(scope="module")
def shapes(fo):
    from ovsam_plugins.fiftyone.model import get_predictor

    return get_predictor("ovsam-shapes", device="cpu", dtype="fp32")


@pytest.fixture
def dataset(fo, scenes):
    """The scenes with ``ground_truth`` Detections (true labels, masks cropped to their boxes)."""
    ds = fo.Dataset()
    samples = []
    for path, truth in scenes:
        h, w = truth[0][1].shape
        gt = []
        for name, m in truth:
            bb = box_of(m, w, h)
            x0, y0 = int(round(bb[0] * w)), int(round(bb[1] * h))
            gt.append(fo.Detection(label=name, bounding_box=bb,
                                   mask=m[y0:y0 + int(round(bb[3] * h)), x0:x0 + int(round(bb[2] * w))]))
        samples.append(fo.Sample(filepath=str(path), ground_truth=fo.Detections(detections=gt)))
    ds.add_samples(samples)
    try:
        yield ds
    finally:
        ds.delete()


def score(ds, field: str, scenes) -> Tuple[float, float, int]:
    """(recall, precision, objects) of ``field`` decoded from FiftyOne's format, against the truth."""
    truth: Dict[str, Truth] = {str(p): t for p, t in scenes}
    tp = n_pred = found = n_gt = 0
    for s in ds.iter_samples():
        gt = truth[s.filepath]
        h, w = gt[0][1].shape
        dets = s[field].detections
        assert all(d.mask is not None and 0 < d.confidence <= 1 for d in dets)
        masks = [d.to_segmentation(frame_size=(w, h), target=1).mask > 0 for d in dets]
        m = match_objects(masks, [d.label for d in dets], [d.confidence for d in dets],
                          [g[1] for g in gt], [g[0] for g in gt])
        tp, n_pred = tp + int(m["tp"].sum()), n_pred + len(dets)
        found, n_gt = found + int(m["gt_found"].sum()), n_gt + len(gt)
    return found / n_gt, tp / max(n_pred, 1), n_pred


def coco_map(ds, field: str, key: str) -> float:
    res = ds.evaluate_detections(field, gt_field="ground_truth", eval_key=key, use_masks=True, compute_mAP=True,
                                 progress=False)
    return float(res.mAP())


def test_apply_model_with_no_prompt_field_labels_everything(fo, shapes, dataset, scenes):
    from ovsam_plugins.fiftyone import OVSAMModel

    model = OVSAMModel(model="ovsam-shapes", device="cpu", points_per_side=PPS, predictor=shapes)
    dataset.apply_model(model, "ovsam")                       # no prompt field, no classes: everything mode
    recall, precision, n = score(dataset, "ovsam", scenes)
    print(f"apply_model everything: recall {recall:.3f} precision {precision:.3f} ({n} predictions)")
    assert recall >= 0.9 and precision >= 0.85, (recall, precision)

    good = coco_map(dataset, "ovsam", "ev")
    # the same masks with wrong names: each label replaced by the next base class
    wrong = dataset.clone()
    try:
        for s in wrong.iter_samples(autosave=True):
            for d in s.ovsam.detections:
                d.label = BASE[(BASE.index(d.label) + 1) % len(BASE)] if d.label in BASE else "?"
        bad = coco_map(wrong, "ovsam", "ev")
    finally:
        wrong.delete()
    print(f"evaluate_detections mAP {good:.3f}; with wrong labels {bad:.3f}")
    assert good >= 0.8 and bad < 0.2, (good, bad)


def test_apply_model_classes_field_keyword_is_find_mode(fo, dataset, predictor):
    """``classes_field=`` on apply_model: find mode for the labels of that field (here two of them;
    the random ``ovsam-test`` model: only the labels are checked)."""
    from ovsam_plugins.fiftyone import OVSAMModel

    keep = ["red circle", "blue triangle"]
    for s in dataset.iter_samples(autosave=True):
        s["two"] = fo.Detections(detections=[d.copy() for d in s.ground_truth.detections if d.label in keep])
    assert sorted(dataset.distinct("two.detections.label")) == sorted(keep)
    model = OVSAMModel(model="ovsam-test", device="cpu", points_per_side=4, min_score=0.0, predictor=predictor)
    dataset.apply_model(model, "found", classes_field="two")
    assert sorted(lab.name for lab in model._auto[0]) == sorted(keep) and model._auto[1].mode == "find"
    assert dataset.exists("found").count() == len(dataset)
    assert set(dataset.distinct("found.detections.label")) <= set(keep)
    with pytest.raises(ValueError, match="nope"):
        dataset.apply_model(model, "found", classes_field="nope")


def test_operator_finds_the_classes_of_a_field_and_evaluate_reports_map(fo, installed, shapes, dataset, scenes):
    import fiftyone.operators as foo

    r = foo.execute_operator(f"{URI}/label_everything", {"dataset": dataset, "params": {
        "classes_field": "ground_truth", "model": "ovsam-shapes", "points_per_side": PPS, "device": "cpu"}})
    assert r.error is None, r.error
    assert r.result["mode"] == "find" and r.result["labelled"] == len(scenes)
    assert sorted(r.result["classes"]) == sorted({n for _, t in scenes for n, _ in t})
    recall, precision, n = score(dataset, "ovsam_auto", scenes)
    print(f"operator find: recall {recall:.3f} precision {precision:.3f} ({n} predictions)")
    assert recall >= 0.9 and precision >= 0.85, (recall, precision)
    assert r.result["objects"] == n

    # the evaluate operator: ground truth = the classes field of the run, mAP reported
    r = foo.execute_operator(f"{URI}/evaluate", {"dataset": dataset, "params": {
        "pred_field": "ovsam_auto", "compute_mAP": True}})
    assert r.error is None, r.error
    print(f"evaluate operator: mAP {r.result['mAP']:.3f}, recognition {r.result['recognition']}")
    assert r.result["gt_field"] == "ground_truth" and r.result["mAP"] >= 0.8
    assert r.result["mAP"] == pytest.approx(coco_map(dataset, "ovsam_auto", "check"))


def test_interrupted_operator_run_resumes_labelling_each_sample_once(fo, installed, dataset, predictor, monkeypatch):
    """Stopped by an error after two samples, then run again: every sample labelled exactly once."""
    import fiftyone.operators as foo

    from ovsam_plugins.fiftyone import labeling

    done: List[str] = []
    real = labeling.prelabel
    state = {"calls": 0, "fail_at": 3}

    def flaky(pred, image, *a, **k):
        state["calls"] += 1
        if state["calls"] == state["fail_at"]:
            raise RuntimeError("power cut")
        out = real(pred, image, *a, **k)
        done.append(image.source)
        return out

    monkeypatch.setattr(labeling, "prelabel", flaky)
    params = {"classes": "red circle, green square", "model": "ovsam-test", "points_per_side": 4, "device": "cpu"}
    with pytest.raises(Exception, match="power cut"):
        foo.execute_operator(f"{URI}/label_everything", {"dataset": dataset, "params": params})
    assert dataset.exists("ovsam_auto").count() == len(done) == 2
    assert dataset.info["ovsam"]["runs"]["ovsam_auto"]["finished"] is False

    # other settings into the half-labelled field are refused (no mix of two runs)
    with pytest.raises(Exception, match="overwrite"):
        foo.execute_operator(f"{URI}/label_everything", {"dataset": dataset, "params": {**params, "min_score": 0.3}})

    op = foo.get_operator(f"{URI}/label_everything")
    r = op(dataset, classes=["red circle", "green square"], model="ovsam-test", points_per_side=4, device="cpu")
    assert (r.result["skipped_existing"], r.result["labelled"], r.result["failed"]) == (2, len(dataset) - 2, 0)
    assert len(done) == len(set(done)) == len(dataset)              # each sample labelled once
    assert dataset.exists("ovsam_auto").count() == len(dataset)     # none skipped
    dataset.reload()
    assert dataset.info["ovsam"]["runs"]["ovsam_auto"]["finished"] is True
    r = op(dataset, classes=["red circle", "green square"], model="ovsam-test", points_per_side=4, device="cpu")
    assert (r.result["skipped_existing"], r.result["labelled"]) == (len(dataset), 0) and len(done) == len(dataset)


def test_delegated_run_reports_progress_and_cancel_stops_between_samples(fo, installed, dataset, predictor):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    from ovsam_plugins.fiftyone import label_everything

    op = foo.get_operator(f"{URI}/label_everything")
    queued = op(dataset, "deleg", model="ovsam-test", points_per_side=4, device="cpu", delegate=True)
    assert not dataset.has_sample_field("deleg")
    svc = DelegatedOperationService()
    (run,) = svc.execute_queued_operations(operator=op.uri, dataset_name=dataset.name)
    assert run.error is None, run.error
    doc = svc.get(queued.result["id"])
    assert doc.run_state == "completed" and doc.status.progress == 1.0
    assert doc.status.label.startswith(f"{len(dataset)}/{len(dataset)} samples")
    dataset.reload()
    assert dataset.exists("deleg").count() == len(dataset)

    calls = []
    out = label_everything(dataset, "stopped", model="ovsam-test", points_per_side=4, predictor=predictor,
                           should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert out["cancelled"] and out["labelled"] == 2 and dataset.exists("stopped").count() == 2
