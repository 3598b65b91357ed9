"""ovsam in FiftyOne, on a real dataset (FiftyOne's own MongoDB) with the tiny ``ovsam-test`` model.

The model has random weights: its labels are arbitrary but deterministic, so the tests compare
the FiftyOne side with direct ``Predictor`` calls on the same prompts, and check counts, shapes,
guards and hand-computed evaluation numbers.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from ovsam_core import Prompt, load_image

pytest.importorskip("fiftyone.operators")

URI = "@ovsam/ovsam"


def _model(predictor, vocab, **kw):
    from ovsam_plugins.fiftyone import OVSAMModel

    return OVSAMModel(model="ovsam-test", vocabulary=vocab, device="cpu", predictor=predictor, **kw)


def _px_box(det, w, h):
    x, y, bw, bh = det.bounding_box
    return (round(x * w), round(y * h), round((x + bw) * w), round((y + bh) * h))


def _wh(sample):
    with __import__("PIL.Image").Image.open(sample.filepath) as im:
        return im.size


# ---------------------------------------------------------------------------- no database needed
def test_vocabulary_text_syntax(tmp_path):
    from ovsam_core import VocabularyError
    from ovsam_plugins.fiftyone.vocab import describe, from_record, parse_vocabulary

    assert parse_vocabulary(" cat, dog|puppy ,car ") == ["cat", "dog,puppy", "car"]
    assert parse_vocabulary("COCO") == "coco"
    assert parse_vocabulary("") is None and parse_vocabulary(None) is None
    f = tmp_path / "v.txt"
    f.write_text("zebra\nlion, big cat\n")
    assert parse_vocabulary(str(f)) == str(f)
    assert parse_vocabulary(["a,b", "c"]) == ["a,b", "c"]
    with pytest.raises(VocabularyError, match="twice"):
        parse_vocabulary("cat, Cat")
    for src in ("lvis", ["x", "y,z"], None):
        assert from_record(describe(src)) == src


# ---------------------------------------------------------------------------- apply_model
def test_apply_model_boxes(make_dataset, predictor, vocab, spy):
    ds = make_dataset()
    ds.apply_model(_model(predictor, vocab), label_field="ovsam", prompt_field="ground_truth")

    # one predict call (one embedding, all prompts) per sample that has prompts; the invalid box
    # of sample 1 is left out
    assert [len(c) for c in spy.calls] == [2, 1]
    s0, s1, s2, s3 = list(ds)
    assert s2.ovsam is None and s3.ovsam is None
    assert len(s1.ovsam.detections) == 1 and len(s0.ovsam.detections) == 2
    assert ds.count("ovsam.detections") == 3

    for sample in (s0, s1):
        w, h = _wh(sample)
        img = load_image(sample.filepath)
        gts = [g for g in sample.ground_truth.detections if g.bounding_box[0] < 1]
        for det, gt in zip(sample.ovsam.detections, gts):
            gx, gy, gw, gh = gt.bounding_box
            ref = predictor.predict(img, Prompt.from_box(gx * w, gy * h, (gx + gw) * w, (gy + gh) * h), vocab,
                                    top_k=5).objects[0]
            x0, y0, x1, y1 = ref.bbox_xyxy
            assert ref.area > 0
            assert _px_box(det, w, h) == (x0, y0, x1, y1)
            # FiftyOne's convention: the mask covers the bounding box only
            assert det.mask.shape == (y1 - y0, x1 - x0)
            assert det.mask.shape == (round(det.bounding_box[3] * h), round(det.bounding_box[2] * w))
            assert np.array_equal(det.mask, ref.mask[y0:y1, x0:x1])
            assert det.mask.sum() == ref.area == det.mask_area
            # the label comes from the ovsam vocabulary, the prompt's label is kept aside
            assert det.label == ref.label and det.label in vocab
            # the reference decodes this prompt alone, apply_model all of the sample's prompts at
            # once: equal up to float rounding (the matrix shapes differ)
            assert det.confidence == pytest.approx(ref.score, rel=1e-5, abs=1e-6)
            assert det.top_k_labels == [lab for lab, _ in ref.top_k] and len(det.top_k_labels) == 3
            assert det.top_k_scores == pytest.approx([s for _, s in ref.top_k], rel=1e-5, abs=1e-6)
            assert det.prompt_label == gt.label and det.prompt_id == gt.id and det.prompt_type == "box"


def test_apply_model_keypoints_with_negative_points(make_dataset, predictor, vocab, spy):
    ds = make_dataset()
    ds.apply_model(_model(predictor, vocab), label_field="from_clicks", prompt_field="clicks")
    s0 = ds.first()
    w, h = _wh(s0)
    (prompts,) = spy.calls
    # the NaN point is dropped, the negative one kept with label 0
    assert prompts == [Prompt(points=((30.0, 20.0), (60.0, 45.0)), labels=(1, 0))]
    (det,) = s0.from_clicks.detections
    ref = predictor.predict(load_image(s0.filepath), prompts, vocab).objects[0]
    x0, y0, x1, y1 = ref.bbox_xyxy
    assert np.array_equal(det.mask, ref.mask[y0:y1, x0:x1]) and det.label == ref.label
    assert det.prompt_type == "points" and det.prompt_label == "cat"
    assert ds.count("from_clicks.detections") == 1


def test_apply_model_prompt_errors_before_work(make_dataset, predictor, vocab, spy):
    from ovsam_plugins.fiftyone import PromptFieldError

    ds = make_dataset()
    model = _model(predictor, vocab)
    with pytest.raises(ValueError, match="nope"):
        ds.apply_model(model, label_field="out", prompt_field="nope")
    with pytest.raises(PromptFieldError, match="holds Classification"):
        ds.apply_model(model, label_field="out", prompt_field="cls", skip_failures=False)
    with pytest.raises(ValueError, match="nope"):  # no prompt field: prompt-free, its classes field must exist
        ds.apply_model(model, label_field="out", classes_field="nope")
    with pytest.raises(ValueError, match="promt_field"):
        ds.apply_model(model, label_field="out", promt_field="ground_truth")
    assert spy.calls == [] and not ds.has_sample_field("out")


# ---------------------------------------------------------------------------- label_with_prompts
def test_label_with_prompts_counts_and_guards(make_dataset, predictor, vocab, spy):
    from ovsam_plugins.fiftyone import LabelFieldExistsError, PromptFieldError, label_with_prompts

    ds = make_dataset()
    # a clear error before any work: checked before the model is even looked up
    with pytest.raises(PromptFieldError, match="does not exist.*ground_truth"):
        label_with_prompts(ds, "nope", "out", model="no-such-model")
    with pytest.raises(PromptFieldError, match="holds Classification"):
        label_with_prompts(ds, "cls", "out", model="no-such-model")
    with pytest.raises(ValueError, match="is the prompt field"):
        label_with_prompts(ds, "ground_truth", "ground_truth", model="no-such-model")
    with pytest.raises(LabelFieldExistsError, match="holds Classification"):
        label_with_prompts(ds, "ground_truth", "cls", overwrite=True, model="no-such-model")
    assert spy.calls == [] and not ds.has_sample_field("out")

    seen = []
    summary = label_with_prompts(ds, "ground_truth", "out", model="ovsam-test", vocabulary=vocab,
                                 device="cpu", predictor=predictor, progress=lambda f, m: seen.append(f))
    assert {k: summary[k] for k in ("samples", "processed", "labelled", "objects", "skipped_no_prompts",
                                    "invalid_prompts", "failed", "skipped_existing")} == dict(
        samples=4, processed=4, labelled=2, objects=3, skipped_no_prompts=2, invalid_prompts=1, failed=0,
        skipped_existing=0)
    assert seen == [0.25, 0.5, 0.75, 1.0]
    assert "outside" in summary["problems"][0]
    assert ds.count("out.detections") == 3
    run = ds.info["ovsam"]["runs"]["out"]
    assert run["prompt_field"] == "ground_truth" and run["finished"] and run["model"] == "ovsam-test"

    # never overwritten unless asked
    before = ds.values("out.detections.id")
    with pytest.raises(LabelFieldExistsError, match="2 sample"):
        label_with_prompts(ds, "ground_truth", "out", model="ovsam-test", vocabulary=vocab, predictor=predictor)
    assert ds.values("out.detections.id") == before
    again = label_with_prompts(ds, "ground_truth", "out", model="ovsam-test", vocabulary=vocab,
                               predictor=predictor, overwrite=True)
    assert again["labelled"] == 2 and ds.count("out.detections") == 3
    after = ds.values("out.detections.id")
    assert [len(a) if a else 0 for a in after] == [2, 1, 0, 0] and after != before


def test_resume_after_interruption(make_dataset, predictor, vocab):
    from ovsam_plugins.fiftyone import label_with_prompts

    ds = make_dataset(n_extra=3)  # 7 samples, 5 with prompts

    def interrupt(fraction, message):
        if fraction >= 3 / 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        label_with_prompts(ds, "ground_truth", "ovsam", model="ovsam-test", vocabulary=vocab,
                           predictor=predictor, progress=interrupt)
    done = ds.exists("ovsam").values("id")
    assert len(done) == 2  # samples 0 and 1; sample 2 has no prompts
    first = {s.id: [d.id for d in s.ovsam.detections] for s in ds.select(done)}
    assert ds.info["ovsam"]["runs"]["ovsam"]["finished"] is False

    summary = label_with_prompts(ds, "ground_truth", "ovsam", model="ovsam-test", vocabulary=vocab,
                                 predictor=predictor, skip_existing=True)
    assert summary["skipped_existing"] == 2 and summary["labelled"] == 3 and summary["processed"] == 5
    # nothing duplicated, nothing lost, the first part untouched
    n_prompts = [len([g for g in s.ground_truth.detections if g.bounding_box[0] < 1]) if s.ground_truth else 0
                 for s in ds]
    n_labels = [len(s.ovsam.detections) if s.ovsam else 0 for s in ds]
    assert n_labels == n_prompts == [2, 1, 0, 0, 2, 2, 2]
    assert {s.id: [d.id for d in s.ovsam.detections] for s in ds.select(done)} == first
    assert ds.info["ovsam"]["runs"]["ovsam"]["finished"] is True
    # and a third run has nothing left to do
    third = label_with_prompts(ds, "ground_truth", "ovsam", model="ovsam-test", vocabulary=vocab,
                               predictor=predictor, skip_existing=True)
    assert third["labelled"] == 0 and third["skipped_existing"] == 5 and ds.count("ovsam.detections") == 9


# ---------------------------------------------------------------------------- evaluation
def test_evaluate_matches_hand_computed_numbers(fo, image_dir, gt_detection):
    from ovsam_plugins.fiftyone import evaluate

    from PIL import Image
    path = image_dir.parent / "square.png"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(path)
    ds = fo.Dataset()
    try:
        s = fo.Sample(filepath=str(path))
        a = gt_detection("cat", 10, 10, 30, 30, 100, 100)
        b = gt_detection("dog", 50, 50, 70, 70, 100, 100)
        c = gt_detection("dog", 80, 80, 90, 90, 100, 100)
        s["gt"] = fo.Detections(detections=[a, b, c])

        def pred(label, gt, box, mask):
            x0, y0, x1, y1 = box
            return fo.Detection(label=label, bounding_box=[x0 / 100, y0 / 100, (x1 - x0) / 100, (y1 - y0) / 100],
                                mask=mask, confidence=0.9, prompt_label=gt.label, prompt_id=gt.id)

        m1 = np.zeros((20, 20), bool)
        m1[:16] = True  # 320 px inside A (400): IoU 0.8
        s["hand"] = fo.Detections(detections=[
            pred("cat", a, (10, 10, 30, 30), m1),
            pred("cat", b, (50, 55, 70, 75), np.ones((20, 20), bool)),  # 300 / 500 = IoU 0.6, wrong name
            pred("dog", c, (80, 80, 90, 83), np.ones((3, 10), bool)),  # 30 / 100 = IoU 0.3
        ])
        ds.add_sample(s)

        with pytest.raises(ValueError, match="give gt_field"):
            evaluate(ds, "hand")
        r = evaluate(ds, "hand", "gt", eval_key="ev", iou=0.5)
        # masks, any class: A and B matched, C's prediction too poor
        assert {k: r["mask"][k] for k in ("tp", "fp", "fn")} == {"tp": 2, "fp": 1, "fn": 1}
        assert r["mask"]["precision"] == pytest.approx(2 / 3) and r["mask"]["recall"] == pytest.approx(2 / 3)
        # recognition: only A (cat) counts
        assert {k: r["recognition"][k] for k in ("tp", "fp", "fn")} == {"tp": 1, "fp": 2, "fn": 2}
        assert r["recognition"]["precision"] == pytest.approx(1 / 3)
        # the paper's accuracy: top-1 label vs the prompt's label
        assert r["accuracy"] == pytest.approx(2 / 3) and r["objects"] == 3
        assert r["per_class_accuracy"] == {"cat": {"accuracy": 1.0, "count": 1},
                                           "dog": {"accuracy": 0.5, "count": 2}}
        assert r["mean_class_accuracy"] == pytest.approx(0.75)
        assert r["miou"] == pytest.approx((0.8 + 0.6 + 0.3) / 3) and r["paired_objects"] == 3
        # FiftyOne's own IoUs agree with the hand-computed ones
        assert sorted(round(v, 6) for v in ds.values("hand.detections.ev_mask_iou")[0] if v) == [0.6, 0.8]
        assert set(ds.list_evaluations()) == {"ev_mask", "ev_cls"}
        assert ds.info["ovsam"]["evaluations"]["ev"]["accuracy"] == pytest.approx(2 / 3)
        with pytest.raises(ValueError, match="exists"):
            evaluate(ds, "hand", "gt", eval_key="ev")
        assert evaluate(ds, "hand", "gt", eval_key="ev", overwrite=True, iou=0.25)["mask"]["tp"] == 3
    finally:
        ds.delete()


# ---------------------------------------------------------------------------- plugin and operators
def test_installed_plugin_is_found_by_fiftyone(fo, installed):
    import fiftyone.operators as foo
    import fiftyone.plugins as fop

    plugin_dir = installed / "@ovsam" / "ovsam"
    assert (plugin_dir / "fiftyone.yml").is_file() and (plugin_dir / "__init__.py").is_file()
    assert [p.name for p in fop.list_plugins()] == ["@ovsam/ovsam"]
    uris = {op.uri for op in foo.list_operators()}
    assert {f"{URI}/label_with_prompts", f"{URI}/evaluate", f"{URI}/set_vocabulary"} <= uris
    # installing again needs --force
    from ovsam_core.cli import main

    assert main(["fiftyone", "install"]) == 2
    assert main(["fiftyone", "install", "--force"]) == 0


def test_operators_run_without_the_app(fo, installed, make_dataset, predictor, vocab, spy):
    import fiftyone.operators as foo

    ds = make_dataset()
    r = foo.execute_operator(f"{URI}/set_vocabulary", {"dataset": ds, "params": {"vocabulary": "cat, dog, car"}})
    assert r.result["num_classes"] == 3
    ds.reload()
    assert ds.info["ovsam"]["vocabulary"] == {"names": vocab}

    # the dataset's vocabulary is used when none is given
    r = foo.execute_operator(f"{URI}/label_with_prompts", {"dataset": ds, "params": {
        "prompt_field": "ground_truth", "label_field": "ovsam", "model": "ovsam-test", "device": "cpu"}})
    assert r.error is None
    assert (r.result["labelled"], r.result["objects"], r.result["skipped_no_prompts"]) == (2, 3, 2)
    assert r.result["vocabulary"] == {"names": vocab}
    assert set(ds.distinct("ovsam.detections.label")) <= set(vocab)
    assert [len(c) for c in spy.calls] == [2, 1]

    # a wrong prompt field is a clear error, before any work
    with pytest.raises(Exception, match="holds Classification"):
        foo.execute_operator(f"{URI}/label_with_prompts", {"dataset": ds, "params": {
            "prompt_field": "cls", "label_field": "other", "model": "ovsam-test"}})
    op = foo.get_operator(f"{URI}/label_with_prompts")
    with pytest.raises(ValueError, match="does not exist"):
        op(ds, "nope", "other", model="ovsam-test")
    assert len(spy.calls) == 2 and not ds.has_sample_field("other")

    # the target view: only the selected samples
    view = ds.select(ds.first().id)
    r = op(view, "ground_truth", "on_view", model="ovsam-test", vocabulary=["cat", "dog"], device="cpu")
    assert r.result["labelled"] == 1 and ds.count("on_view.detections") == 2
    assert set(ds.distinct("on_view.detections.label")) <= {"cat", "dog"}

    r = foo.get_operator(f"{URI}/evaluate")(ds, "ovsam")
    res = r.result
    assert res["gt_field"] == "ground_truth" and res["objects"] == 3 and res["paired_objects"] == 3
    # every ground-truth object is matched or missed (the invalid box of sample 1 counts too)
    assert res["mask"]["tp"] + res["mask"]["fn"] == ds.count("ground_truth.detections") == 4
    assert res["mask"]["tp"] + res["mask"]["fp"] == 3 and 0 <= res["accuracy"] <= 1
    assert math.isclose(res["accuracy"], np.mean([d == g for d, g in zip(
        ds.values("ovsam.detections[].label"), ds.values("ovsam.detections[].prompt_label"))]))


def test_delegated_labelling_with_progress(fo, installed, make_dataset, predictor):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    ds = make_dataset()
    op = foo.get_operator(f"{URI}/label_with_prompts")
    queued = op(ds, "ground_truth", "deleg", model="ovsam-test", vocabulary="cat, dog", device="cpu", delegate=True)
    assert not ds.has_sample_field("deleg")  # only scheduled
    svc = DelegatedOperationService()
    (done,) = svc.execute_queued_operations(operator=op.uri, dataset_name=ds.name)
    assert done.error is None, done.error
    doc = svc.get(queued.result["id"])
    assert doc.run_state == "completed"
    assert doc.status.progress == 1.0 and doc.status.label.startswith("4/4 samples")
    ds.reload()
    assert ds.count("deleg.detections") == 3


def test_zoo_model(fo, installed, make_dataset, predictor, vocab):
    import fiftyone.zoo as foz
    from ovsam_plugins.fiftyone import OVSAMModel

    assert "ovsam-test" in foz.list_zoo_models()
    model = foz.load_zoo_model("ovsam-test", vocabulary=vocab, device="cpu")
    assert isinstance(model, OVSAMModel) and model.predictor is predictor
    ds = make_dataset()
    ds.apply_model(model, label_field="zoo", prompt_field="ground_truth")
    ds.apply_model(_model(predictor, vocab), label_field="direct", prompt_field="ground_truth")
    assert ds.count("zoo.detections") == 3
    for a, b in zip(ds.values("zoo.detections[]"), ds.values("direct.detections[]")):
        assert a.label == b.label and np.array_equal(a.mask, b.mask)


def test_install_command_in_a_fresh_process(tmp_path):
    """`ovsam fiftyone install --plugins-dir`, in a new process; the adapter's package and its
    command-line hook do not import FiftyOne until the command runs."""
    code = ("import sys, ovsam_plugins.fiftyone as p, ovsam_plugins.fiftyone.cli\n"
            "from ovsam_core.cli import build_parser, main\n"
            "a = build_parser().parse_args(['fiftyone', 'install', '--zoo', '--force'])\n"
            "assert a.zoo and a.force and a.fiftyone_command == 'install'\n"
            "assert 'fiftyone' not in sys.modules, 'fiftyone imported'\n"
            "assert p.PLUGIN_NAME == '@ovsam/ovsam'\n"
            "sys.exit(main(['fiftyone', 'install', '--plugins-dir', sys.argv[1]]))\n")
    env = {**os.environ, "FIFTYONE_PLUGINS_DIR": str(tmp_path / "unused")}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    yml = tmp_path / "p" / "@ovsam" / "ovsam" / "fiftyone.yml"
    assert yml.is_file() and "@ovsam/ovsam" in yml.read_text() and "label_with_prompts" in yml.read_text()
    assert (yml.parent / "__init__.py").is_file() and not (tmp_path / "unused").exists()


def test_label_command(fo, make_dataset, predictor, capsys):
    from ovsam_core.cli import main

    ds = make_dataset()
    args = ["fiftyone", "label", ds.name, "--prompt-field", "ground_truth", "--model", "ovsam-test",
            "--vocab", "cat, dog", "--device", "cpu", "-q"]
    assert main(args) == 0
    assert "labelled 2 samples (3 objects)" in capsys.readouterr().out
    assert set(ds.distinct("ovsam.detections.label")) <= {"cat", "dog"}
    assert main(args) == 2  # the field exists: refused, with the way out
    assert "skip_existing" in capsys.readouterr().err
    assert main(args + ["--skip-existing"]) == 0 and ds.count("ovsam.detections") == 3
    assert main(["fiftyone", "label", "no-such-dataset", "--prompt-field", "x"]) == 2
