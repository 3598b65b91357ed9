"""Learning from annotations: webhooks -> prototypes in SQLite -> better labels, across restarts."""
from __future__ import annotations

from ls_fixtures import *  # noqa: F401,F403 - fixtures (and the skip without the label-studio extra)

import json
import sqlite3

import numpy as np
import pytest
from PIL import Image

from ovsam_core import blend_probabilities

from ls_helpers import (FakeServer, annotation, config_xml, ls_task, predict_body, rectangle, synthetic_scene,
                        webhook_body)

SW, SH = 320, 240
CFG = config_xml(outputs=("rectangle",))


def prototype_rows(backend, project="1"):
    with sqlite3.connect(str(backend.s.db_path)) as c:
        return c.execute("SELECT label, annotation_id, task_id, region_id FROM prototypes WHERE project = ? "
                         "ORDER BY id", (project,)).fetchall()


def scene_task(docroot, seed, task_id):
    rgb, objs = synthetic_scene(seed, (SW, SH))
    Image.fromarray(rgb).save(docroot / f"scene{seed}.png")
    regions = [rectangle(box, SW, SH, label=name, rid=f"s{seed}-{i}", from_name="box") for i, (name, box) in enumerate(objs)]
    return ls_task(task_id, image=f"/data/local-files/?d=scene{seed}.png"), regions, objs


def accuracy(client, docroot, seeds):
    """Labels of box prompts (the true boxes, given as unlabeled 'object' rectangles) vs the truth."""
    ok = n = 0
    for seed in seeds:
        task, regions, objs = scene_task(docroot, seed, 1000 + seed)
        task["annotations"] = [annotation(regions, ann_id=1000 + seed, task_id=1000 + seed)]
        r = client.post("/predict", json=predict_body([task], CFG))
        assert r.status_code == 200, r.get_json()
        res = r.get_json()["results"][0]["result"]
        assert len(res) == len(objs)
        for reg, (name, _) in zip(res, objs):
            ok += reg["value"]["rectanglelabels"][0] == name
            n += 1
    return ok / n


def test_recorded_webhooks_store_replace_and_delete_prototypes(client_for, recorded):
    client, backend = client_for()
    r = client.post("/webhook", json=recorded("webhook-annotation_created"))
    assert r.status_code == 201 and r.get_json()["prototypes"] == 1
    assert [row[0] for row in prototype_rows(backend)] == ["square"]
    r = client.post("/webhook", json=recorded("webhook-annotation_updated"))  # the rectangle + a keypoint
    assert r.get_json()["prototypes"] == 2
    assert sorted(row[0] for row in prototype_rows(backend)) == ["square", "triangle"]  # replaced, not added
    r = client.post("/webhook", json=recorded("webhook-annotations_deleted"))
    assert r.get_json()["deleted"] == 2 and prototype_rows(backend) == []
    m = client.get("/metrics").get_json()
    assert m["counters"]["prototypes_learned"] == 3


def test_cancelled_annotations_and_foreign_labels_store_nothing(client_for, docroot):
    client, backend = client_for()
    task, regions, _ = scene_task(docroot, 1, 1)
    regions.append(rectangle((0, 0, 10, 10), SW, SH, label="unicorn", from_name="box"))
    ann = annotation(regions)
    client.post("/webhook", json=webhook_body("ANNOTATION_CREATED", task, ann, CFG))
    assert len(prototype_rows(backend)) == 3  # "unicorn" is not a project label
    ann["was_cancelled"] = True
    client.post("/webhook", json=webhook_body("ANNOTATION_UPDATED", task, ann, CFG))
    assert prototype_rows(backend) == []


def test_prototypes_only_rerank_labels_that_have_them(make_backend):
    w = make_backend(prototype_weight=50.0).s.prototype_weight  # the weight the backend blends with
    p = np.array([0.5, 0.3, 0.2])
    np.testing.assert_allclose(blend_probabilities(p, [None, None, None], w), p)
    q = blend_probabilities(p, [None, 0.1, 0.9], w)  # "a" has no prototypes: keeps 0.5; b, c share 0.5
    assert q[0] == pytest.approx(0.5) and q[1] + q[2] == pytest.approx(0.5) and q[2] > 0.49
    q = blend_probabilities(np.array([1.0, 0.0]), [None, 0.5], w)  # prototypes but no text evidence: uniform prior
    assert q[1] == pytest.approx(1 / 3)


def test_bad_webhooks(client):
    assert client.post("/webhook", json={"action": "ANNOTATION_CREATED"}).status_code == 400
    assert client.post("/webhook", data="nope", content_type="application/json").status_code == 400


def test_accuracy_rises_after_a_few_annotations_and_survives_a_restart(client_for, docroot):
    client, backend = client_for()
    held_out = range(100, 105)
    before = accuracy(client, docroot, held_out)
    for seed in range(3):  # annotate three images (nine objects)
        task, regions, _ = scene_task(docroot, seed, seed + 1)
        r = client.post("/webhook", json=webhook_body("ANNOTATION_CREATED", task, annotation(regions, seed + 1, seed + 1), CFG))
        assert r.status_code == 201 and r.get_json()["prototypes"] == 3
    after = accuracy(client, docroot, held_out)
    print(f"label accuracy on held-out scenes: {before:.2f} before, {after:.2f} after 3 annotated images")
    assert after >= before + 0.25, (before, after)
    assert after >= 0.7, (before, after)
    # a new process on the same model dir: prototypes come back from SQLite
    client2, backend2 = client_for()
    assert backend2 is not backend and len(backend2.learner.prototypes("1")) == 9
    assert accuracy(client2, docroot, held_out) == after
    # other projects are not affected
    task, regions, objs = scene_task(docroot, 100, 1)
    task["annotations"] = [annotation(regions)]
    assert len(backend2.learner.prototypes("2")) == 0


def test_async_learning_and_project_deletion(client_for, docroot):
    client, backend = client_for(learn_async=True)
    task, regions, _ = scene_task(docroot, 5, 1)
    r = client.post("/webhook", json=webhook_body("ANNOTATION_CREATED", task, annotation(regions), CFG))
    assert r.status_code == 201 and r.get_json()["status"] == "queued"
    backend.learner.flush()
    assert len(prototype_rows(backend)) == 3
    r = client.post("/webhook", json={"action": "PROJECT_DELETED", "project": {"id": 1}})
    assert r.get_json()["deleted"] == 3 and prototype_rows(backend) == []


def test_learning_can_be_disabled(client_for, docroot):
    """learn=False: annotations (webhooks and /train) store nothing and labels do not change;
    the same annotations with learning on do change them (the control)."""
    client, backend = client_for(learn=False)
    before = accuracy(client, docroot, range(100, 103))
    tasks = []
    for seed in range(3):
        task, regions, _ = scene_task(docroot, seed, seed + 1)
        ann = annotation(regions, seed + 1, seed + 1)
        r = client.post("/webhook", json=webhook_body("ANNOTATION_CREATED", task, ann, CFG))
        assert r.status_code == 201
        assert r.get_json() == {"status": "ignored", "action": "ANNOTATION_CREATED", "reason": "learning is disabled"}
        tasks.append(dict(task, annotations=[ann]))
    r = client.post("/train", json={"annotations": tasks, "project": "1", "label_config": CFG})
    assert r.status_code == 200 and r.get_json()["status"] == "ignored"
    assert backend.learner.store is None and not backend.s.db_path.exists()
    m = client.get("/metrics").get_json()
    assert "prototypes" not in m and "prototypes_learned" not in m["counters"]
    assert accuracy(client, docroot, range(100, 103)) == before
    on, backend_on = client_for()  # learning on: the same webhooks change the labels
    for task in tasks:
        on.post("/webhook", json=webhook_body("ANNOTATION_CREATED", task, task["annotations"][0], CFG))
    assert len(prototype_rows(backend_on)) == 9 and accuracy(on, docroot, range(100, 103)) != before


def test_legacy_train_call_learns_every_annotated_task(client_for, docroot):
    client, backend = client_for()
    tasks = []
    for seed in range(2):
        task, regions, _ = scene_task(docroot, seed, seed + 1)
        task["annotations"] = [annotation(regions, seed + 1, seed + 1)]
        tasks.append(task)
    r = client.post("/train", json={"annotations": tasks, "project": "1.17", "label_config": CFG,
                                    "params": {"login": None, "password": None}})
    assert r.status_code == 200 and r.get_json()["prototypes"] == 6
    assert client.post("/train", json={"project": "1.17"}).status_code == 400


def test_start_training_reads_the_project_from_label_studio(client_for, docroot, recorded):
    ls = FakeServer()
    try:
        tasks = []
        for seed in range(2):
            task, regions, _ = scene_task(docroot, seed, seed + 1)
            task["annotations"] = [annotation(regions, seed + 1, seed + 1)]
            tasks.append(task)
        ls.routes["/api/projects/1"] = (200, {}, json.dumps({"id": 1, "label_config": CFG}).encode())
        ls.routes["/api/projects/1/export"] = (200, {}, json.dumps(tasks).encode())
        client, backend = client_for(label_studio_url=ls.url, api_key="0123456789abcdef0123456789abcdef01234567")
        r = client.post("/webhook", json=recorded("webhook-start_training"))  # project 1
        assert r.status_code == 201 and r.get_json()["prototypes"] == 6
        assert all(req[2]["Authorization"].startswith("Token ") for req in ls.requests)
    finally:
        ls.close()
