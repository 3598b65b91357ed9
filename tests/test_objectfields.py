"""Detection fields of result objects (`ovsam_core.hosts.objectfields`): relative boxes, cropped masks, names by index."""
from __future__ import annotations

import numpy as np
import pytest

from ovsam_core import (AutoObject, LabeledObject, ObjectPrediction, Prompt, mask_to_rle, object_fields,
                        relative_mask)

W, H = 40, 20


def _mask():
    m = np.zeros((H, W), bool)
    m[4:10, 8:20] = True
    m[6, 8] = False
    return m


def _prediction(mask, prompt=None, **kw):
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if mask.any() else (0, 0, 0, 0)
    args = dict(prompt=prompt or Prompt.from_box(6, 2, 22, 12), mask=mask, label="dog", label_index=1, score=0.8,
                top_k=(("dog", 0.8), ("dog", 0.15), ("cat", 0.05)), top_k_indices=(1, 2, 0), bbox_xyxy=box,
                area=int(mask.sum()), quality={"stability": 0.9})
    args.update(kw)
    return ObjectPrediction(**args)


def test_prompted_object_box_crop_and_names_by_index():
    mask = _mask()
    # two classes share the display name "dog": only the index tells them apart
    f = object_fields(_prediction(mask), W, H, names=["cat", "dog", "dog_toy"])
    assert f["label"] == "dog" and f["top_k_labels"] == ["dog", "dog_toy", "cat"]
    assert f["bounding_box"] == pytest.approx([8 / W, 4 / H, 12 / W, 6 / H])
    assert f["mask"].shape == (6, 12) and f["mask"].flags.c_contiguous
    # the box + crop paste back to exactly the mask
    assert np.array_equal(relative_mask(f["bounding_box"], f["mask"], W, H), mask)
    assert f["confidence"] == pytest.approx(0.8) and f["top_k_scores"] == pytest.approx([0.8, 0.15, 0.05])
    assert f["mask_area"] == int(mask.sum()) and f["stability"] == pytest.approx(0.9)
    assert "label_path" not in f
    # without written names: the display names of the result
    assert object_fields(_prediction(mask), W, H)["top_k_labels"] == ["dog", "dog", "cat"]


def test_empty_mask_keeps_the_prompt_box_and_paths_use_written_names():
    f = object_fields(_prediction(np.zeros((H, W), bool), label_path=("animal",)), W, H, names=["cat", "dog", "x"],
                      display={"animal": "Animal_kingdom"})
    assert f["bounding_box"] == pytest.approx([6 / W, 2 / H, 16 / W, 10 / H])
    assert f["mask"].shape == (10, 16) and not f["mask"].any() and f["mask_area"] == 0
    assert f["label_path"] == ["Animal_kingdom"]


def test_labeled_object_uses_its_host_label_and_region_origin():
    mask = _mask()
    region = mask[2:, 4:]   # the object found in the region starting at (4, 2)
    ys, xs = np.nonzero(region)
    auto = AutoObject(rle=mask_to_rle(region), label="dog", label_index=1, score=0.7, top_k=(("dog", 0.7),),
                      bbox_xyxy=(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),
                      area=int(region.sum()), point=(5.0, 3.0), quality={"stability": 0.95, "rank": 0.6},
                      crop_box=(0, 0, region.shape[1], region.shape[0]), top_k_indices=(1,))
    f = object_fields(LabeledObject("Hund", 0.75, auto, origin=(4, 2)), W, H)
    assert f["label"] == "Hund" and f["confidence"] == pytest.approx(0.75) and f["top_k_labels"] == ["dog"]
    assert np.array_equal(relative_mask(f["bounding_box"], f["mask"], W, H), mask)
    assert f["stability"] == pytest.approx(0.95) and f["mask_area"] == int(mask.sum())


def test_other_objects_are_refused():
    with pytest.raises(TypeError, match="ObjectPrediction or a LabeledObject"):
        object_fields({"label": "dog"}, W, H)
