"""Unit tests of ovsam_core.hosts.modelservice (ServedModel, answer_each) and ovsam_core.hosts.learner."""
from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from ovsam_core import (LabelledRegion, Metrics, Prompt, PrototypeLearner, ServedModel, ServiceError, answer_each,
                        internal_error, service_errors)


# ------------------------------------------------------------------------------------- ServedModel
def test_served_model_loads_once_and_reports():
    class Cache(list):
        nbytes = 10

    class Pred:
        cache, encoder_calls = Cache([1, 2]), 3

    calls = []
    model = Pred()
    m = ServedModel("tiny", lambda: calls.append(1) or model)
    assert m.status(model_version="v1") == {"status": "UP", "model_version": "v1", "model": "tiny",
                                             "model_loaded": False}
    assert m.value is None and not m.loaded
    assert m.get() is model and m.get() is model and calls == [1]
    assert m.loaded and m.status()["model_loaded"] is True
    m.metrics.add("requests")
    r = m.report(model_version="v1")
    assert r["model"] == "tiny" and r["model_version"] == "v1" and r["model_loaded"] is True
    assert r["counters"] == {"requests": 1.0} and r["embedding_cache"] == {"entries": 2, "bytes": 10, "encoder_calls": 3}


def test_served_model_load_failure_is_a_503_and_shown_on_health(caplog):
    def boom():
        raise OSError("weights missing")

    m = ServedModel("big", boom)
    with pytest.raises(ServiceError) as e:
        m.get()
    assert e.value.status == 503 and str(e.value) == "the model 'big' could not be loaded: weights missing"
    assert m.status()["model_error"] == "OSError: weights missing" and not m.loaded
    with caplog.at_level(logging.ERROR):
        m.warmup().join(5)
    assert any("could not be loaded" in r.getMessage() for r in caplog.records)


def test_served_model_with_a_value_never_loads():
    m = ServedModel("given", lambda: pytest.fail("must not load"), value=42)
    assert m.loaded and m.get() == 42 and m.warmup().join(5) is None


# ------------------------------------------------------------------------------------- answer_each
def test_answer_each_keeps_bad_items_in_their_answer(caplog):
    m = ServedModel("x", lambda: 0)

    def answer(i: int) -> str:
        if i == 2:
            raise ServiceError("refused", 422)
        if i == 3:
            raise RuntimeError("secret detail")
        return f"ok {i}"

    with caplog.at_level(logging.INFO):
        out = answer_each([1, 2, 3, 4], answer, lambda i, msg: f"failed {i}: {msg}", metrics=m.metrics,
                          unit="task", failure="no prediction")
    assert out[0] == "ok 1" and out[1] == "failed 2: refused" and out[3] == "ok 4"
    assert out[2] == "failed 3: internal error (RuntimeError); see the backend's log" == "failed 3: " + internal_error(RuntimeError())
    assert m.metrics.snapshot() == {"errors": 2.0}
    assert any("task 2: no prediction: refused" in r.getMessage() for r in caplog.records)
    tb = [r for r in caplog.records if r.exc_info]
    assert len(tb) == 1 and "task 3" in tb[0].getMessage()  # the traceback goes to the log only


def test_answer_each_cuts_items_after_the_limit(caplog):
    def slow(i: int) -> int:
        time.sleep(0.06)
        return i

    with caplog.at_level(logging.WARNING):
        out = answer_each([1, 2, 3, 4, 5], slow, lambda i, msg: msg, limit=0.1, limit_name="TIMEOUT",
                          hint="use the batch command", unit="task")
    assert out[:2] == [1, 2] and len(out) == 5
    assert all(o == "not run: the request took longer than the caller waits (0 s, TIMEOUT)" for o in out[2:])
    assert any("3 of 5 tasks not run" in r.getMessage() and "use the batch command" in r.getMessage()
               for r in caplog.records)


# ------------------------------------------------------------------------------------- PrototypeLearner
class FakePredictor:
    """Embeds nothing; descriptors come from a monkeypatched region_prototypes."""

    model_key = ("fake", "fp32")


@pytest.fixture()
def fake_prototypes(monkeypatch):
    import ovsam_core.hosts.learner as learner

    def region_prototypes(predictor, image, regions, lock=None, known=(), on_skip=None):
        out = []
        for r in regions:
            if r.label == "bad":
                on_skip(r, ValueError("unreadable"))
                continue
            v = np.zeros(4, np.float32)
            v[int(r.region_id[1:]) % 4] = 1.0
            out.append((r.label, r.region_id, v))
        return out

    monkeypatch.setattr(learner, "region_prototypes", region_prototypes)


def region(label: str, rid: str) -> LabelledRegion:
    return LabelledRegion(label, rid, Prompt.from_box(0, 0, 10, 10))


def test_learner_learns_replaces_and_forgets(tmp_path, fake_prototypes):
    m = ServedModel("fake", FakePredictor)
    lr = PrototypeLearner(tmp_path / "p.sqlite3", m, background=False)
    skipped = []
    n = lr.learn("1", "a1", "t1", [("img1", [region("cat", "r1"), region("bad", "r2")]), ("img2", [region("dog", "r3")])],
                 on_skip=lambda r, e: skipped.append(r.region_id))
    assert n == 2 and skipped == ["r2"] and lr.prototypes("1").counts == {"cat": 1, "dog": 1}
    assert lr.learn("1", "a1", "t1", [("img1", [region("cat", "r1")])]) == 1  # replaced, not added
    assert lr.prototypes("1").counts == {"cat": 1} and len(lr.prototypes("2")) == 0
    lr.learn("1", "a2", "t2", [("img", [region("dog", "r9")])])
    assert lr.report() == {"learning_queue": 0, "prototypes": {"1": 2}}
    assert lr.forget("1", ["a1"]) == 1 and lr.forget("1", whole_project=True) == 1
    assert m.metrics.snapshot()["prototypes_learned"] == 4.0


def test_learner_submit_at_once_queued_and_failures(tmp_path, fake_prototypes, caplog):
    m = ServedModel("fake", FakePredictor)
    lr = PrototypeLearner(tmp_path / "p.sqlite3", m, background=False)
    assert lr.submit("CREATED", lambda: 3) == {"status": "ok", "action": "CREATED", "prototypes": 3}
    bg = PrototypeLearner(tmp_path / "q.sqlite3", m, background=True, queue_size=1)
    done = []
    assert bg.submit("CREATED", lambda: done.append(1) or 1)["status"] == "queued"
    bg.flush(5)
    assert done == [1]

    def fail() -> int:
        raise RuntimeError("no image")

    with caplog.at_level(logging.WARNING):
        bg.submit("UPDATED", fail)
        bg.flush(5)
        assert lr.learn_each([("task 1", lambda: 2), ("task 2", fail), ("task 3", lambda: 1)]) == 3
    assert m.metrics.snapshot()["learn_errors"] == 2.0
    assert any("task 2: learning failed: no image" in r.getMessage() for r in caplog.records)
    bg.close()


def test_learner_drops_jobs_when_its_queue_is_full(tmp_path):
    import threading

    m = ServedModel("fake", FakePredictor)
    lr = PrototypeLearner(tmp_path / "p.sqlite3", m, queue_size=1)
    gate = threading.Event()
    lr.submit("first", lambda: gate.wait(5) and 0)  # runs (the queue is empty again) ...
    time.sleep(0.1)
    assert lr.submit("second", lambda: 0)["status"] == "queued"  # ... this waits ...
    assert lr.submit("third", lambda: 0) == {"status": "dropped", "action": "third"}  # ... this is refused
    assert m.metrics.snapshot()["webhooks_dropped"] == 1.0
    gate.set()
    lr.flush(5)
    lr.close()


def test_learning_off_stores_nothing(tmp_path):
    lr = PrototypeLearner(None, ServedModel("fake", FakePredictor))
    assert lr.store is None and len(lr.prototypes("1")) == 0 and lr.forget("1", ["a"]) == 0
    assert lr.report() == {"learning_queue": 0}
    with pytest.raises(ValueError, match="learning is off"):
        lr.learn("1", "a", None, [])


# ------------------------------------------------------------------------------------- prelabel_outputs
@pytest.mark.parametrize("mode", ["find", "everything"])
def test_prelabel_outputs_routes_each_object_to_the_outputs_that_allow_its_label(shapes, mode):
    import threading
    from pathlib import Path

    from ovsam_core import AutoSettings, HostLabel, load_image, prelabel_outputs

    img = load_image(Path(__file__).resolve().parents[1] / "examples" / "scene.png")
    circle, square, star = (HostLabel("Circle", "red circle"), HostLabel("Square", "green square"),
                            HostLabel("Star", "yellow star"))
    outputs = {"brush": [circle, square], "box": [square, star]}
    lock = threading.Lock()
    res, objects = prelabel_outputs(shapes, img, AutoSettings(mode=mode, points_per_side=8), outputs, lock=lock)
    assert len(objects) == len(res.objects) > 0 and not lock.locked()
    for o, lab in zip(objects, res.objects):
        assert o.mask.shape == (img.height, img.width) and o.bbox_xyxy == lab.bbox_xyxy and o.area == lab.object.area
        assert o.prompt.points is not None and len(o.prompt.points) == 1
        want = {name for name, labs in outputs.items() if lab.label in {h.name for h in labs}}
        assert set(o.choices) == want and want  # every label belongs to an output
        assert all(c == (lab.label, lab.score, [(lab.label, lab.score)]) for c in o.choices.values())
        assert bool(o.vocabulary_top_k) == (mode == "everything")
    assert {lab.label for lab in res.objects} <= {"Circle", "Square", "Star"}
    res, objects = prelabel_outputs(shapes, img, AutoSettings(mode="off"), outputs)
    assert objects == [] and len(res.objects) == 0


# ------------------------------------------------------------------------------------- service_errors
def test_service_errors_turns_the_named_errors_into_service_errors():
    with pytest.raises(ServiceError) as e, service_errors(prefix="extra_params: "):
        raise ValueError("bad value")
    assert str(e.value) == "extra_params: bad value" and e.value.status == 400

    class Refused(KeyError):
        status = 403

    metrics = Metrics()
    with pytest.raises(ServiceError) as e, service_errors((KeyError,), 422, metrics=metrics):
        raise Refused("no")
    assert e.value.status == 403 and metrics.snapshot()["errors"] == 1  # the error's own status wins
    with pytest.raises(ServiceError) as e, service_errors((KeyError,), 422, metrics=metrics):
        raise KeyError("x")
    assert e.value.status == 422 and metrics.snapshot()["errors"] == 2
    with pytest.raises(TypeError), service_errors():  # other errors pass unchanged
        raise TypeError("not mine")
    with service_errors():
        pass
