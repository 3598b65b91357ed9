"""Core pre-labelling for hosts (`ovsam_core.hosts.prelabel`) with the trained `ovsam-shapes` on held-out
synthetic scenes, and the batch/resume bookkeeping (`ovsam_core.hosts.jobs`)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ovsam_core import (AutoSettings, Cancelled, HostLabel, Journal, coco_annotations, instance_image,
                        label_queries, prelabel, run_batch)
from ovsam_core.evaluation.auto import match_objects
from ovsam_core.results import rle_to_mask
from ovsam_core.training.data import decode_segmentation

EVAL_SEED = 1000
#: a host's label set: names unlike the model's classes, the class text as the label's text /
#: synonym (Label Studio's value + predicted_values), plus labels the scenes never contain
HOST = [HostLabel("Circle", "red circle"), HostLabel("Ring", "striped ring", ("ring",)),
        HostLabel("Square", "green square"), HostLabel("Star", "yellow star"), HostLabel("Triangle", "blue triangle"),
        HostLabel("Diamond", "checkered diamond"), HostLabel("Dog", "dog")]
TO_HOST = {"red circle": "Circle", "striped ring": "Ring", "green square": "Square", "yellow star": "Star",
           "blue triangle": "Triangle", "checkered diamond": "Diamond"}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """[(rgb, [(host label, mask)])] of held-out scenes with base classes only."""
    from PIL import Image

    from ovsam_core.synthetic import CATEGORIES, generate_split

    root = tmp_path_factory.mktemp("prelabel")
    split = generate_split(root, "val", 10, EVAL_SEED, classes=[c.name for c in CATEGORIES if c.split == "base"])
    doc = json.loads(open(split["annotations"]).read())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    out = []
    for im in doc["images"]:
        rgb = np.asarray(Image.open(f"{split['images']}/{im['file_name']}").convert("RGB"))
        gt = [(TO_HOST[names[a["category_id"]]], decode_segmentation(a["segmentation"], im["height"], im["width"]))
              for a in doc["annotations"] if a["image_id"] == im["id"]]
        out.append((rgb, gt))
    return out


def _score(results, scenes):
    tp = n_pred = found = n_gt = 0
    for res, (_, gt) in zip(results, scenes):
        m = match_objects([o.mask for o in res], [o.label for o in res], [o.score for o in res],
                          [g[1] for g in gt], [g[0] for g in gt])
        tp += int(m["tp"].sum())
        n_pred += len(res)
        found += int(m["gt_found"].sum())
        n_gt += len(gt)
    return found / n_gt, tp / max(n_pred, 1), n_gt


@pytest.mark.parametrize("mode", ["find", "everything"])
def test_prelabel_names_objects_with_the_hosts_labels(shapes, scenes, mode):
    results = [prelabel(shapes, rgb, AutoSettings(mode=mode, points_per_side=16), HOST) for rgb, _ in scenes]
    recall, precision, n_gt = _score(results, scenes)
    assert n_gt >= 20
    assert recall >= 0.9 and precision >= 0.85, (recall, precision)
    assert {o.label for r in results for o in r} <= {h.name for h in HOST}
    if mode == "everything":   # names come from the model's classes: a label no class maps to never appears
        assert "Dog" not in {o.label for r in results for o in r}


def test_labels_not_in_the_project_are_dropped(shapes, scenes):
    only = [HostLabel("Circle", "red circle")]
    for rgb, gt in scenes[:4]:
        ev = prelabel(shapes, rgb, AutoSettings(mode="everything", points_per_side=16), only)
        fd = prelabel(shapes, rgb, AutoSettings(mode="find", points_per_side=16), only)
        n_circles = sum(g[0] == "Circle" for g in gt)
        for res in (ev, fd):
            assert all(o.label == "Circle" for o in res)
            assert len(res) == n_circles
        assert ev.unmapped >= len(gt) - n_circles   # the other objects (and any spurious one) are dropped


def test_without_host_labels_everything_keeps_class_names(shapes, scenes):
    rgb, gt = scenes[0]
    res = prelabel(shapes, rgb, AutoSettings(mode="everything", points_per_side=16))
    assert sorted(o.label for o in res) == sorted({v: k for k, v in TO_HOST.items()}[g[0]] for g in gt)
    with pytest.raises(ValueError, match="find mode needs the labels"):
        prelabel(shapes, rgb, AutoSettings(mode="find"))
    assert len(prelabel(shapes, rgb, AutoSettings(mode="off"), HOST)) == 0


def test_region_results_are_in_whole_image_pixels(shapes, scenes):
    rgb, gt = scenes[1]
    h, w = rgb.shape[:2]
    region = (w // 4, 0, w, h)
    res = prelabel(shapes, rgb, AutoSettings(mode="everything", points_per_side=16), HOST, region=region)
    assert res.origin == (w // 4, 0) and res.region_size == (h, w - w // 4) and res.image_size == (h, w)
    anns = coco_annotations(res, 7, {h.name: i for i, h in enumerate(HOST)})
    assert len(anns) == len(res) >= 1
    ids = instance_image(res)
    assert ids.shape == res.region_size and set(np.unique(ids)) <= set(range(len(res) + 1))
    for o, a in zip(res, anns):
        full = rle_to_mask(a["segmentation"])
        assert full.shape == (h, w) and full[:, : w // 4].sum() == 0
        ys, xs = np.nonzero(full)
        assert tuple(a["bbox"]) == (xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min())
        assert o.bbox_xyxy == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert o.relative_box(w, h)[0] == pytest.approx(xs.min() / w)
        assert o.crop().shape == (ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min())
    # objects fully inside the region are found with the right name
    inside = [g for g in gt if not g[1][:, : w // 4 + 2].any()]
    m = match_objects([rle_to_mask(a["segmentation"]) for a in anns], [a["label"] for a in anns],
                      [a["score"] for a in anns], [g[1] for g in inside], [g[0] for g in inside])
    assert m["gt_found"].all()
    with pytest.raises(ValueError, match="outside"):
        prelabel(shapes, rgb, AutoSettings(mode="everything"), HOST, region=(w + 5, 0, w + 50, 10))


def test_progress_reports_and_cancel_stops(shapes, scenes):
    rgb, _ = scenes[2]
    seen = []
    prelabel(shapes, rgb, AutoSettings(mode="everything", points_per_side=16), HOST,
             progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 256) and all(t == 256 for _, t in seen) and len(seen) >= 2
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    def stop(done, total):
        if done > 0:
            raise Cancelled()

    with pytest.raises(Cancelled):
        shapes.segment_everything(rgb, points_per_side=16, points_per_batch=32, progress=stop)


def test_settings_parse_host_strings_and_name_bad_values():
    s = AutoSettings.parse({"auto": "Find", "points_per_side": "8", "min_score": "0.3", "max_objects": "",
                            "unrelated": "x"})
    assert (s.mode, s.points_per_side, s.min_score, s.max_objects) == ("find", 8, 0.3, None)
    assert AutoSettings.parse({"ovsam_auto": "everything"}, prefix="ovsam_").mode == "everything"
    assert AutoSettings.parse({}).mode == "off"
    for bad, msg in [({"auto": "maybe"}, "auto must be one of off, find, everything"),
                     ({"points_per_side": "x"}, "points_per_side must be an integer"),
                     ({"min_score": "2"}, r"min_score must be in \[0, 1\]"),
                     ({"points_per_side": "0"}, "points_per_side must be an integer in")]:
        with pytest.raises(ValueError, match=msg):
            AutoSettings.parse(bad)
    assert s.options().points_per_side == 8 and s.to_dict()["mode"] == "find"


def test_label_queries_one_per_distinct_name():
    q, owners = label_queries([HostLabel("A", "red circle"), HostLabel("B", "Red_Circle"),
                               HostLabel("C", "ring", ("striped ring",))])
    assert q == ["red circle", "ring,striped ring"] and [o.name for o in owners] == ["A", "C"]


# ---------------------------------------------------------------- batch / resume bookkeeping
def test_journal_survives_a_torn_line(tmp_path):
    j = Journal(tmp_path / "j.jsonl", key="id")
    j.append({"id": "a", "n": 1})
    j.append({"id": "b", "n": 2})
    with open(j.path, "a") as f:
        f.write('{"id": "c", "n"')           # killed mid-write
    j2 = Journal(j.path, key="id")
    assert sorted(j2.records()) == ["a", "b"]
    j2.append({"id": "c", "n": 3})
    assert j2.records()["c"]["n"] == 3 and j.path.read_text().count("\n") == 3
    with pytest.raises(ValueError, match="'id'"):
        j2.append({"n": 4})


def test_run_batch_resumes_after_a_kill_without_repeats(tmp_path):
    j = Journal(tmp_path / "work.jsonl", key="id")
    calls = []

    def work(item):
        if item == 5 and not calls.count("killed"):
            calls.append("killed")
            raise KeyboardInterrupt      # the user's Ctrl-C / a killed worker mid-item
        if item == 3:
            raise OSError("unreadable")
        calls.append(item)
        j.append({"id": item})
        return item * 10

    with pytest.raises(KeyboardInterrupt):
        run_batch(range(8), work, done=lambda k: k in j.records(), errors=(OSError,), show_progress=False)
    rep = run_batch(range(8), work, done=lambda k: k in j.records(), errors=(OSError,), show_progress=False)
    assert rep.total == 8 and rep.skipped == 4 and rep.processed == 3 and [k for k, _ in rep.failed] == [3]
    assert sorted(j.records()) == [0, 1, 2, 4, 5, 6, 7]
    assert [c for c in calls if c != "killed"] == [0, 1, 2, 4, 5, 6, 7]   # each once
    assert rep.results == {5: 50, 6: 60, 7: 70} and "3 already" not in rep.summary()
    stop = run_batch(range(4), lambda i: i, should_stop=lambda: True, show_progress=False)
    assert stop.cancelled and stop.processed == 0 and "stopped early: 4 left" in stop.summary()
