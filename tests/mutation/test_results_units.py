"""Unit tests of the mask/RLE helpers and the JSON contract of ``ovsam_core.results``.

COCO RLE counts are checked against hand-computed run lengths (column-major). Part of the
default run and of ``bash tests/mutation/run.sh``."""
from __future__ import annotations

import json
import math

import numpy as np

from ovsam_core.predictor import ObjectPrediction, Prediction
from ovsam_core.prompts import Prompt
from ovsam_core.results import FORMAT, _num, mask_to_rle, object_to_json, prediction_to_json, rle_to_mask


def _mask() -> np.ndarray:
    m = np.zeros((3, 4), bool)  # column-major runs: col0 000, col1 011, col2 010, col3 000
    m[1, 1] = m[2, 1] = m[1, 2] = True
    return m


def test_mask_to_rle_exact_counts_and_size_order():
    from pycocotools import mask as mask_utils

    rle = mask_to_rle(_mask())
    assert rle["size"] == [3, 4] and all(type(v) is int for v in rle["size"])
    assert isinstance(rle["counts"], str)
    # uncompressed runs (zeros first): 4 zeros, 2 ones, 1 zero, 1 one, 4 zeros
    expected = mask_utils.frPyObjects({"size": [3, 4], "counts": [4, 2, 1, 1, 4]}, 3, 4)
    assert rle["counts"] == expected["counts"].decode("ascii")
    assert set(rle) == {"size", "counts"}
    json.dumps(rle)


def test_rle_round_trip_non_contiguous_views_and_dtypes():
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (5, 7), (64, 3)]:
        m = rng.random((h, w)) > 0.5
        out = rle_to_mask(mask_to_rle(m))
        assert out.dtype == bool and out.shape == (h, w)
        np.testing.assert_array_equal(out, m)
    big = rng.random((6, 10)) > 0.5
    view = big[::2, 1::3]  # a strided view
    np.testing.assert_array_equal(rle_to_mask(mask_to_rle(view)), view)
    np.testing.assert_array_equal(rle_to_mask(mask_to_rle(_mask().astype(np.uint8))), _mask())
    assert mask_to_rle(np.zeros((2, 3), bool))["counts"] != mask_to_rle(np.ones((2, 3), bool))["counts"]


def test_rle_to_mask_of_a_known_rle():
    rle = mask_to_rle(_mask())
    np.testing.assert_array_equal(rle_to_mask({"size": [3, 4], "counts": rle["counts"]}), _mask())


def test_num_rounds_to_six_places_and_drops_non_finite():
    assert _num(0.1234564) == 0.123456 and _num(0.1234566) == 0.123457
    assert _num(2) == 2.0 and type(_num(2)) is float and type(_num(np.float32(0.5))) is float
    assert _num(-1.25) == -1.25
    assert _num(float("nan")) is None and _num(math.inf) is None and _num(-math.inf) is None


def _object(label_path=()) -> ObjectPrediction:
    return ObjectPrediction(prompt=Prompt(points=((1.5, 2.0),), labels=(1,), box=(0.0, 1.0, 3.0, 3.0)),
                            mask=_mask(), label="cat", label_index=2, score=0.91234567,
                            top_k=(("cat", 0.91234567), ("dog", float("nan"))), bbox_xyxy=(1, 1, 3, 3), area=3,
                            quality={"mean_logit": 6.25, "stability": float("inf")}, label_path=label_path)


def test_object_to_json_is_the_contract():
    d = object_to_json(_object(("animal", "thing")))
    assert d == {"prompt": {"points": [[1.5, 2.0, 1]], "box": [0.0, 1.0, 3.0, 3.0]},
                 "label": "cat", "score": 0.912346,
                 "top_k": [{"label": "cat", "score": 0.912346}, {"label": "dog", "score": None}],
                 "bbox_xyxy": [1, 1, 3, 3], "area": 3,
                 "quality": {"mean_logit": 6.25, "stability": None},
                 "label_path": ["animal", "thing"],
                 "mask": mask_to_rle(_mask())}
    assert isinstance(d["bbox_xyxy"], list) and isinstance(d["label_path"], list)
    json.dumps(d, allow_nan=False)


def test_prediction_to_json_is_the_contract():
    pred = Prediction(objects=(_object(), _object()), image_size=(3, 4), model="ovsam-test", mode="head",
                      vocabulary="custom")
    d = prediction_to_json(pred, "img.png")
    assert d == {"format": "ovsam-prediction-v1", "image": {"path": "img.png", "width": 4, "height": 3},
                 "model": "ovsam-test", "mode": "head", "vocabulary": "custom",
                 "objects": [object_to_json(_object()), object_to_json(_object())]}
    assert FORMAT == "ovsam-prediction-v1"
    assert prediction_to_json(pred)["image"]["path"] is None
    assert prediction_to_json(Prediction((), (5, 6), "m", "fused", "v"))["objects"] == []
