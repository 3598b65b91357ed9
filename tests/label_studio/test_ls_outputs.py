"""Mask -> brush RLE / polygons / rectangles, and Label Studio regions -> prompts and masks."""
from __future__ import annotations

from ls_fixtures import *  # noqa: F401,F403 - fixtures (and the skip without the label-studio extra)

import math

import numpy as np
import pytest

from ovsam_core import mask_box
from ovsam_plugins.label_studio import outputs
from ovsam_plugins.label_studio.labels import parse_label_config
from ovsam_plugins.label_studio.regions import (RegionError, batch_prompts, brush_mask, interactive_prompt,
                                                polygon_mask, region_geometry)

from ls_helpers import brush_rle_to_mask, config_xml, control, keypoint, rectangle


def test_brush_rle_round_trip():
    rng = np.random.default_rng(1)
    for shape in ((1, 1), (7, 13), (64, 48)):
        m = rng.random(shape) < 0.4
        rle = outputs.mask_to_brush_rle(m)
        assert all(isinstance(v, int) and 0 <= v <= 255 for v in rle)
        np.testing.assert_array_equal(brush_rle_to_mask(rle, *shape), m)
        np.testing.assert_array_equal(brush_mask({"format": "rle", "rle": rle}, shape[1], shape[0]), m)
    with pytest.raises(RegionError):
        brush_mask({"format": "rle", "rle": outputs.mask_to_brush_rle(m)}, 10, 10)


def test_region_values_are_percent():
    m = np.zeros((50, 100), bool)
    m[10:20, 30:80] = True
    (pv,), cover = outputs.polygon_values(m, 100, 50, tolerance=0.0)
    assert cover.coverage == 1.0
    xs = sorted({x for x, _ in pv["points"]})
    ys = sorted({y for _, y in pv["points"]})
    assert xs == [30.0, 80.0] and ys == [20.0, 40.0] and pv["closed"] is True
    rv = outputs.rectangle_value(mask_box(m), 100, 50)
    assert rv == {"x": 30.0, "y": 20.0, "width": 50.0, "height": 20.0, "rotation": 0}


def rect_box(value, width, height):
    """A rectangle value's pixel box, as :func:`region_geometry` reads it."""
    return region_geometry({"type": "rectangle", "value": value}, width, height)[0].box


def test_rect_box_rotation():
    v = {"x": 10, "y": 10, "width": 20, "height": 10, "rotation": 90}
    x0, y0, x1, y1 = rect_box(v, 100, 100)  # 20x10 px turned 90 deg clockwise about (10, 10)
    assert (x0, y0, x1, y1) == pytest.approx((0, 10, 10, 30))
    assert rect_box({**v, "rotation": 0}, 200, 100) == (20, 10, 60, 20)
    with pytest.raises(RegionError):
        rect_box({"x": "nan", "y": 1, "width": 1, "height": 1}, 10, 10)


def test_interactive_prompt_combines_clicks_and_last_box():
    items = [keypoint(10, 20, 100, 50, rid="a"), keypoint(30, 40, 100, 50, positive=False, rid="b"),
             rectangle((0, 0, 50, 25), 100, 50), rectangle((5, 5, 60, 30), 100, 50, label="circle"),
             {"type": "choices", "to_name": "image", "value": {"choices": ["x"]}}]
    pr = interactive_prompt(items, 100, 50, "image")
    assert np.allclose(pr.prompt.points, ((10, 20), (30, 40)))
    assert pr.prompt.labels == (1, 0)
    assert pr.prompt.box == pytest.approx((5, 5, 60, 30))
    assert pr.label == "circle"
    assert interactive_prompt(items, 100, 50, "other") is None
    assert interactive_prompt([keypoint(1, 1, 100, 50, positive=False)], 100, 50, "image") is None
    # clicks outside the image are clipped onto it
    pr = interactive_prompt([keypoint(120, -5, 100, 50)], 100, 50, "image")
    assert pr.prompt.points == ((100.0, 0.0),)


def test_batch_prompts_one_per_region():
    items = [rectangle((0, 0, 50, 25), 100, 50, rid="r"), keypoint(10, 20, 100, 50, rid="k"),
             keypoint(11, 21, 100, 50, positive=False, rid="n"),
             {"type": "rectanglelabels", "to_name": "image", "value": {"x": "bad"}}]
    prs = batch_prompts(items, 100, 50, "image")
    assert len(prs) == 2 and [p.label for p in prs] == ["square", "circle"]  # the rectangle "r", the keypoint "k"
    assert prs[0].prompt.box == pytest.approx((0, 0, 50, 25)) and np.allclose(prs[1].prompt.points, ((10, 20),))


def test_region_geometry_of_each_kind():
    m = np.zeros((50, 100), bool)
    m[10:20, 30:80] = True
    brush = {"type": "brushlabels", "value": {"format": "rle", "rle": outputs.mask_to_brush_rle(m)}}
    prompt, mask = region_geometry(brush, 100, 50)
    assert prompt.box == (30, 10, 80, 20) and (mask == m).all()
    poly = {"type": "polygonlabels", "value": outputs.polygon_values(m, 100, 50, tolerance=0.0)[0][0]}
    prompt, mask = region_geometry(poly, 100, 50)
    assert prompt.box == (30, 10, 80, 20) and (mask == m).all()
    prompt, mask = region_geometry(rectangle((1, 2, 3, 4), 100, 50), 100, 50)
    assert prompt.box == pytest.approx((1, 2, 3, 4)) and mask is None
    prompt, mask = region_geometry(keypoint(5, 6, 100, 50), 100, 50)
    assert np.allclose(prompt.points, ((5, 6),)) and mask is None
    assert region_geometry({"type": "choices", "value": {}}, 100, 50) == (None, None)


def test_region_dict_shape():
    cfg = parse_label_config(config_xml())
    c = control(cfg, "brush")
    r = outputs.region(c, {"format": "rle", "rle": [1]}, "circle", 100, 50, 0.5, {"text": ["x"]})
    assert r["from_name"] == "brush" and r["to_name"] == "image" and r["type"] == "brushlabels"
    assert r["value"]["brushlabels"] == ["circle"] and r["original_width"] == 100 and r["original_height"] == 50
    assert r["score"] == 0.5 and r["meta"] == {"text": ["x"]} and len(r["id"]) == 10
    assert math.isfinite(r["score"])
