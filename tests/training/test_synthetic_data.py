"""Synthetic generator, COCO-format reading, LSJ, prompt sampling, the global batch order."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from ovsam_core.synthetic import CATEGORIES, generate_dataset, uncompressed_rle
from ovsam_core.training.data import (Clip2SamDataset, CocoInstances, GlobalBatchSampler, decode_segmentation,
                                      image_file_name, lsj, masks_to_boxes, sample_prompts)


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_generator_is_deterministic_and_coco_valid(tmp_path):
    from pycocotools.coco import COCO

    a = generate_dataset(tmp_path / "a", {"train": 6, "val": 3}, seed=3)
    generate_dataset(tmp_path / "b", {"train": 6, "val": 3}, seed=3)
    generate_dataset(tmp_path / "c", {"train": 6, "val": 3}, seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    doc = json.loads(a["train"]["annotations"].read_text())
    assert [c["name"] for c in doc["categories"]] == [c.name for c in CATEGORIES]
    assert {c["split"] for c in doc["categories"]} == {"base", "novel"}
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(a["train"]["annotations"]))
    kinds = set()
    for ann in doc["annotations"]:
        seg = ann["segmentation"]
        kinds.add("poly" if isinstance(seg, list) else ("rle-str" if isinstance(seg["counts"], str) else "rle-list"))
        m = coco.annToMask(ann)
        assert m.sum() == ann["area"]
        ys, xs = np.nonzero(m)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
    dets = json.loads(a["train"]["detections"].read_text())
    assert dets and all({"image_id", "bbox", "score", "category_id"} <= set(d) for d in dets)


def test_all_segmentation_encodings_decode_alike():
    from pycocotools import mask as mask_utils

    m = np.zeros((20, 30), bool)
    m[3:9, 4:20] = True
    m[12:18, 25:30] = True
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    assert (decode_segmentation({"size": [20, 30], "counts": rle["counts"].decode()}, 20, 30) == m).all()
    assert (decode_segmentation({"size": [20, 30], "counts": uncompressed_rle(m)}, 20, 30) == m).all()
    poly = [[4, 3, 20, 3, 20, 9, 4, 9]]
    pm = decode_segmentation(poly, 20, 30)
    assert pm[4:8, 5:19].all() and not pm[12:].any() and not pm[:, 22:].any()
    assert masks_to_boxes(m[None]).tolist() == [[4, 3, 30, 18]]


def test_instances_split_filter_and_lvis_file_names(tmp_path):
    p = generate_dataset(tmp_path, {"train": 12}, seed=0)["train"]
    inst = CocoInstances(p["annotations"], p["images"])
    assert inst.class_names[0] == "red circle" and inst.split[-1] == "novel"
    n_novel = sum(inst.split[inst.cat_index[a["category_id"]]] == "novel" for r in inst.records for a in r.anns)
    assert n_novel > 0
    inst.filter_classes(inst.base_mask())
    assert all(inst.split[inst.cat_index[a["category_id"]]] == "base" for r in inst.records for a in r.anns)
    assert all(r.anns for r in inst.records)
    # --novel overrides the JSON split
    inst2 = CocoInstances(p["annotations"], p["images"], novel_classes=["red circle"])
    assert inst2.split[0] == "novel" and inst2.split[-1] == "base"
    assert image_file_name({"id": 1, "coco_url": "http://images.cocodataset.org/val2017/000000000139.jpg"}) \
        == "val2017/000000000139.jpg"
    with pytest.raises(ValueError, match="vocabulary"):
        CocoInstances(p["annotations"], p["images"], vocabulary="coco")


def test_prompt_sampling_follows_upstream():
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 32, 32), bool)
    masks[0, 2:10, 2:10] = masks[1, 15:30, 3:8] = masks[2, 20:22, 20:30] = True
    p = sample_prompts(masks, 40, rng)
    assert p["is_box"].sum() == 21 and (~p["is_box"]).sum() == 19
    assert p["is_box"][:21].all()                       # boxes first, as upstream concatenates
    assert np.bincount(p["inst"], minlength=3).tolist() == [14, 13, 13]   # tiled 3 -> 42, first 40
    for i, (x, y) in zip(p["inst"], p["points"].astype(int)):
        assert masks[i, y, x]
    one = sample_prompts(masks[:1], 5, np.random.default_rng(1))
    assert one["is_box"].tolist() == [True, True, True, False, False]
    assert len(sample_prompts(masks[:0], 40, rng)["inst"]) == 0


def test_lsj_and_dataset_items(synth):
    rng = np.random.default_rng(0)
    rgb = np.zeros((100, 200, 3), np.uint8)
    m = np.zeros((2, 100, 200), bool)
    m[0, 10:60, 10:80] = True
    m[1, 0:3, 0:3] = True                                # 9 px: dropped (< 32)
    img, masks, labels = lsj(rgb, m, np.array([4, 5]), rng, 256, scale_range=(0.9, 2.0))
    assert img.shape[0] <= 256 and img.shape[1] <= 256 and masks.shape[1:] == img.shape[:2]
    assert labels.tolist() == [4]
    inst = CocoInstances(synth / "annotations" / "instances_train.json", synth / "images" / "train")
    ds = Clip2SamDataset(inst, 256, seed=1, num_prompts=8)
    a, b = ds[(3, 2)], ds[(3, 2)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["points"], b["points"])
    assert not torch.equal(a["image"], ds[(3, 1)]["image"]) or not torch.equal(a["points"], ds[(3, 1)]["points"])
    assert a["image"].shape == (3, 256, 256) and a["masks"].shape[1:] == (256, 256)
    assert len(a["inst"]) == 8 and a["masks"].shape[0] == a["boxes"].shape[0] == a["labels"].shape[0]


def test_global_batches_do_not_depend_on_world_size():
    single = list(GlobalBatchSampler(23, 4, 1, 0, seed=5, total_steps=12))
    ranks = [list(GlobalBatchSampler(23, 2, 2, r, seed=5, total_steps=12)) for r in range(2)]
    for step, batch in enumerate(single):
        assert batch == ranks[0][step] + ranks[1][step]
    assert GlobalBatchSampler(23, 4, 1, 0, 5, 12).steps_per_epoch == 5
    # epoch 0 and 1 differ, steps restart exactly
    assert single[0] != single[5] and single[5][0][1] == 1
    assert list(GlobalBatchSampler(23, 4, 1, 0, seed=5, total_steps=12, start_step=7)) == single[7:]
    with pytest.raises(ValueError, match="fewer than one global batch"):
        GlobalBatchSampler(3, 2, 2, 0, 0, 1)
