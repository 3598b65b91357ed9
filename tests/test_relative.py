"""Relative boxes/points/crops (as FiftyOne stores them) <-> the core's pixels (`ovsam_core.hosts.relative`)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ovsam_core import (PromptError, pixels_to_relative, prompt_from_relative, prompt_result_box, relative_box_pixels,
                        relative_iou, relative_mask)
from ovsam_core.masks import mask_box, tight_crop


def test_box_round_trip_and_minimum_size():
    assert relative_box_pixels(pixels_to_relative(3, 5, 13, 25, 40, 30), 40, 30) == (3, 5, 13, 25)
    assert relative_box_pixels([0.5, 0.5, 0.0, 0.0], 40, 30) == (20, 15, 21, 16)


def test_mask_crop_pasted_back_equals_the_original_mask():
    rng = np.random.RandomState(0)
    full = np.zeros((30, 40), bool)
    full[4:20, 7:31] = rng.rand(16, 24) > 0.4
    x0, y0, x1, y1 = mask_box(full)
    box = pixels_to_relative(x0, y0, x1, y1, 40, 30)
    crop = tight_crop(full)[0]
    assert np.array_equal(relative_mask(box, crop, 40, 30), full)
    # a crop at another resolution is stretched over its box; no crop fills the box
    small = relative_mask(box, crop[::2, ::2], 40, 30)
    assert small.sum() > 0 and not small[:, :x0].any() and not small[y1:].any()
    assert relative_mask(box, None, 40, 30).sum() == (x1 - x0) * (y1 - y0)
    # partly outside the image: clipped
    assert relative_mask([0.9, 0.9, 0.5, 0.5], None, 40, 30).sum() == 4 * 3


def test_iou_of_two_detections():
    a = relative_mask([0.0, 0.0, 0.5, 0.5], None, 40, 30)
    assert relative_iou([0, 0, 0.5, 0.5], None, [0, 0, 0.5, 0.5], None, 40, 30) == 1.0
    iou = relative_iou([0, 0, 0.5, 0.5], None, [0.25, 0, 0.5, 0.5], None, 40, 30)
    b = relative_mask([0.25, 0.0, 0.5, 0.5], None, 40, 30)
    assert math.isclose(iou, (a & b).sum() / (a | b).sum())
    assert relative_iou([0, 0, 0.2, 0.2], None, [0.5, 0.5, 0.2, 0.2], None, 40, 30) == 0.0


def test_prompts_from_relative_coordinates():
    p = prompt_from_relative(40, 30, box=[0.25, 0.5, 0.5, 0.25])
    assert p.box == (10.0, 15.0, 30.0, 22.5)
    p = prompt_from_relative(40, 30, points=[[0.5, 0.5], [float("nan"), float("nan")], [0.1, 0.2]], labels=[1, 1, 0])
    assert p.points == ((20.0, 15.0), (4.0, 6.0)) and p.labels == (1, 0)
    assert prompt_from_relative(40, 30, points=[[0.5, 0.5]]).labels == (1,)
    for bad in (dict(points=[[None, None]]), dict(box=[0.1, 0.2]), dict(points=[[0.5, 0.5]], labels=[1, 0]),
                dict(box=[1.5, 1.5, 0.1, 0.1])):
        with pytest.raises(PromptError):
            prompt_from_relative(40, 30, **bad)


def test_result_box_falls_back_to_the_prompt():
    box = prompt_from_relative(40, 30, box=[0.25, 0.5, 0.5, 0.25])   # (10, 15, 30, 22.5) pixels
    assert prompt_result_box(box, (1, 2, 3, 4), 40, 30) == (1, 2, 3, 4)
    assert prompt_result_box(box, None, 40, 30) == (10, 15, 30, 23)
    pts = prompt_from_relative(40, 30, points=[[0.1, 0.1], [0.999, 0.999]], labels=[0, 1])
    assert prompt_result_box(pts, None, 40, 30) == (39, 29, 40, 30)


def test_paired_ious_match_each_prediction_with_its_prompting_truth():
    from ovsam_core import paired_ious, relative_iou

    w, h = 40, 20
    truths = {"a": ([0.0, 0.0, 0.5, 0.5], None), "b": ([0.5, 0.5, 0.5, 0.5], None)}
    preds = [("a", [0.0, 0.0, 0.25, 0.5], None), ("b", [0.5, 0.5, 0.5, 0.5], np.ones((3, 3), bool)),
             ("gone", [0.0, 0.0, 1.0, 1.0], None)]
    ious = paired_ious(preds, truths, w, h)
    assert ious == pytest.approx([0.5, 1.0])
    assert ious[0] == pytest.approx(relative_iou([0.0, 0.0, 0.25, 0.5], None, [0.0, 0.0, 0.5, 0.5], None, w, h))
    assert paired_ious([], truths, w, h) == []


def test_percent_geometry_is_relative_geometry_times_100():
    from ovsam_core import finite_number, pixels_to_relative_points, relative_box_bounds, relative_to_pixels

    assert pixels_to_relative(30, 10, 80, 20, 100, 50, scale=100, ndigits=4) == (30.0, 20.0, 50.0, 20.0)
    assert pixels_to_relative(1, 1, 2, 2, 3, 3, ndigits=3) == (0.333, 0.333, 0.333, 0.333)
    pts = [(30, 10), (80, 20)]
    pct = pixels_to_relative_points(pts, 100, 50, 100, 4)
    assert pct == [[30.0, 20.0], [80.0, 40.0]]
    assert relative_to_pixels(pct, 100, 50, 100) == [(30.0, 10.0), (80.0, 20.0)]
    assert relative_to_pixels([(0.5, "0.25")], 40, 20) == [(20.0, 5.0)]
    assert relative_box_bounds({"x": 10, "y": 20, "width": 30, "height": 40}, 200, 100, scale=100) == (20, 20, 80, 60)
    rot = relative_box_bounds({"x": 10, "y": 10, "width": 20, "height": 10, "rotation": 90}, 100, 100, scale=100)
    assert rot == pytest.approx((0, 10, 10, 30))  # turned clockwise about the top-left corner
    assert finite_number("2.5", "x") == 2.5


@pytest.mark.parametrize("call, message", [
    (lambda f: f["relative_to_pixels"]([("a", 1)], 10, 10, 100, "polygon"), "polygon x is not a number: 'a'"),
    (lambda f: f["relative_to_pixels"]([(1, math.inf)], 10, 10), "point y is not finite: inf"),
    (lambda f: f["relative_box_bounds"]({"x": 1, "y": 1, "width": None, "height": 1}, 10, 10), "rectangle width is not a number: None"),
    (lambda f: f["relative_box_bounds"]({"x": 1, "y": 1, "width": 1, "height": 1, "rotation": "nan"}, 10, 10),
     "rectangle rotation is not finite: 'nan'"),
])
def test_bad_host_values_name_what_is_wrong(call, message):
    import ovsam_core

    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call(vars(ovsam_core))
