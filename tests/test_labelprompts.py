"""ovsam_core.hosts.labelprompts: prompts -> objects named with a host's labels per output, the
prototype cache, and the prototypes of labelled regions (trained ``ovsam-shapes`` model)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from ovsam_core import (HostLabel, LabelledRegion, Prompt, PrototypeCache, PrototypeStore, label_mapper, label_prompts,
                        region_prototypes)
from ovsam_core.synthetic import CATEGORIES, synth_image

BASE = [c for c in CATEGORIES if c.split == "base"]
#: host labels whose names differ from the model's class strings (the text is embedded)
LABELS = [HostLabel(c.name.title().replace(" ", ""), c.name) for c in BASE]
BY_TEXT = {lab.text: lab.name for lab in LABELS}


@pytest.fixture(scope="module")
def scenes():
    rng = np.random.default_rng(7)
    out = []
    while sum(len(objs) for _, objs in out) < 12:
        img, objs = synth_image(rng, BASE, min_objects=2, max_objects=4)
        out.append((img, objs))
    return out


def _box(mask):
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_boxes_are_segmented_and_named_with_each_outputs_labels(shapes, scenes):
    """Each object gets its ground-truth class (as the host's label name) in an output that
    allows all labels; an output allowing only two labels never gets another one."""
    two = LABELS[:2]
    right = total = 0
    for img, objs in scenes:
        prompts = [Prompt.from_box(*_box(o["mask"])) for o in objs]
        res = label_prompts(shapes, img, prompts, {"all": LABELS, "two": two}, lock=threading.Lock())
        assert [o.index for o in res] == list(range(len(objs)))
        for o, gt in zip(res, objs):
            assert o.area > 0 and _iou(o.mask, gt["mask"]) > 0.7
            assert o.vocabulary_top_k and "all" in o.choices
            label, score, top = o.choices["all"]
            assert 0 < score <= 1 and top[0] == (label, score) and len(top) <= 5
            right += label == BY_TEXT[gt["category"].name]
            total += 1
            if "two" in o.choices:
                assert o.choices["two"][0] in {lab.name for lab in two}
            assert o.score == pytest.approx(np.mean([c[1] for c in o.choices.values()]))
    assert right / total >= 0.9, (right, total)


def test_a_mapped_vocabulary_and_the_smart_label(shapes, scenes):
    img, objs = scenes[0]
    gt = objs[0]
    prompt = Prompt.from_box(*_box(gt["mask"]))
    # the model's own vocabulary mapped onto host labels whose synonyms are its class strings
    hosts = [HostLabel(f"L{i}", f"thing {i}", (c.name,)) for i, c in enumerate(BASE)]
    mapper, vocab = label_mapper(shapes, hosts, [c.name for c in BASE])
    assert mapper.mapped and vocab == [c.name for c in BASE]
    res = label_prompts(shapes, img, [prompt], {"out": hosts}, vocabulary=[c.name for c in BASE])[0]
    assert res.choices["out"][0] == f"L{BASE.index(gt['category'])}"
    other = next(lab for lab in LABELS if lab.text != gt["category"].name)
    smart = label_prompts(shapes, img, [prompt], {"out": LABELS}, smart_labels=[other.name], label_source="smart")[0]
    assert smart.choices["out"][0] == other.name
    with pytest.raises(ValueError, match="no labels"):
        label_prompts(shapes, img, [prompt], {"out": []})


def test_prototype_cache_reloads_after_a_change(tmp_path):
    assert len(PrototypeCache(None).get("1", lambda: "m")) == 0
    store = PrototypeStore(tmp_path / "p.sqlite3")
    cache = PrototypeCache(store)
    calls = []

    def key():
        calls.append(1)
        return "m"

    v = np.eye(3, dtype=np.float32)
    store.replace_annotation("1", "m", "a1", "t1", [("x", "r1", v[0])])
    assert cache.get("1", key).labels == ("x",) and cache.get("1", key).labels == ("x",)
    assert len(calls) == 1  # the second call was served from the cache
    store.replace_annotation("1", "m", "a2", "t2", [("y", "r2", v[1])])
    assert sorted(cache.get("1", key).labels) == ["x", "y"] and len(calls) == 2


def test_region_prototypes_skip_repeats_and_unreadable_regions(shapes, scenes):
    img, objs = scenes[0]
    m = objs[0]["mask"]
    cy, cx = (int(round(v)) for v in np.argwhere(m).mean(axis=0))
    if not m[cy, cx]:
        cy, cx = (int(v) for v in np.argwhere(m)[len(np.argwhere(m)) // 2])
    box = Prompt.from_box(*_box(m))
    regions = [LabelledRegion("a", "r1", box, m), LabelledRegion("a", "r2", box, m),  # the same object twice
               LabelledRegion("a", "r3", Prompt.from_points([(cx, cy)])),  # a click: segmented first
               LabelledRegion("b", "r4", box, np.zeros_like(m))]  # empty mask -> its box
    skipped = []
    items = region_prototypes(shapes, img, regions, on_skip=lambda r, e: skipped.append(r.region_id))
    ids = [i for _, i, _ in items]
    assert ids[0] == "r1" and "r2" not in ids and "r4" in ids and not skipped
    d = dict((i, v) for _, i, v in items)
    assert all(v.dtype == np.float32 and abs(np.linalg.norm(v) - 1) < 1e-3 for v in d.values())
    again = region_prototypes(shapes, img, regions[:1], known=items)
    assert again == []  # already known from another image of the annotation
    bad = region_prototypes(shapes, img, [LabelledRegion("a", "r5", Prompt.from_box(5000, 5000, 5001, 5001))],
                            on_skip=lambda r, e: skipped.append(r.region_id))
    assert bad == [] and skipped == ["r5"]
