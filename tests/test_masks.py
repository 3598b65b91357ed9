"""ovsam_core.masks: boxes, crops, 8-connected parts, polygons (exact tracing, simplification,
coverage), COCO RLE of crops, crop IoU."""
from __future__ import annotations

import numpy as np
import pytest

from ovsam_core.masks import (components, crop_iou, crop_to_rle, mask_box, mask_to_polygons, polygon_to_mask,
                              resize_nearest, tight_crop)


def filled(m: np.ndarray) -> np.ndarray:
    """The mask with its holes filled (background 4-connected to the border stays background)."""
    bg = ~m
    reach = np.zeros_like(m)
    reach[[0, -1], :] = bg[[0, -1], :]
    reach[:, [0, -1]] |= bg[:, [0, -1]]
    while True:
        n = reach.copy()
        n[1:] |= reach[:-1]
        n[:-1] |= reach[1:]
        n[:, 1:] |= reach[:, :-1]
        n[:, :-1] |= reach[:, 1:]
        n &= bg
        if (n == reach).all():
            return ~reach
        reach = n


def raster(polys, w, h):
    u = np.zeros((h, w), bool)
    for p in polys:
        u |= polygon_to_mask(p, h, w)
    return u


def test_box_and_crop():
    m = np.zeros((6, 8), bool)
    m[2:4, 3:7] = True
    assert mask_box(m) == (3, 2, 7, 4)
    crop, y0, x0 = tight_crop(m)
    assert (y0, x0, crop.shape) == (2, 3, (2, 4)) and crop.all()
    assert mask_box(np.zeros((3, 3), bool)) is None and tight_crop(np.zeros((3, 3), bool))[0].shape == (0, 0)


def test_polygons_trace_components_exactly():
    """Unsimplified polygons rasterise (pixel centres) to exactly the hole-filled components."""
    rng = np.random.default_rng(0)
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(2, 24, 2))
        m = rng.random((h, w)) < rng.uniform(0.1, 0.9)
        res = mask_to_polygons(m, tolerance=0.0, max_points=10 ** 6, max_polygons=10 ** 6, min_area=1)
        assert len(res.polygons) == len(components(m)) == res.parts
        assert res.coverage == 1.0 and res.mask_area == int(m.sum())
        np.testing.assert_array_equal(raster(res.polygons, w, h), filled(m))


def test_components_are_8_connected():
    m = np.zeros((5, 5), bool)
    m[0, 0] = m[1, 1] = m[2, 2] = True  # a diagonal: one component
    m[4, 0] = True
    assert [a for a, _ in components(m)] == [3, 1]


def test_simplified_polygons_stay_close_and_small():
    h, w = 300, 400
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - 150) ** 2 + (xx - 200) ** 2 < 120 ** 2
    poly = mask_to_polygons(disc).polygons[0]
    assert len(poly) <= 200
    r = raster([poly], w, h)
    assert (r & disc).sum() / (r | disc).sum() > 0.98
    assert len(mask_to_polygons(disc, max_points=12).polygons[0]) <= 12


def test_tiny_parts_are_dropped_largest_first_and_reported():
    m = np.zeros((50, 50), bool)
    m[5:25, 5:25] = True  # 400 px
    m[30:40, 30:40] = True  # 100 px
    m[45, 45] = True  # 1 px: under min_area
    res = mask_to_polygons(m, tolerance=0.0)
    assert len(res.polygons) == 2 and res.parts == 3 and res.dropped_parts == 1
    assert raster(res.polygons[:1], 50, 50).sum() == 400
    assert res.covered_area == 500 and res.describe() == "2 of 3 parts, 99.8% of the mask"
    assert mask_to_polygons(np.zeros((4, 4), bool)).polygons == ()


def test_fragmented_mask_is_covered():
    """Issue 13: a mask in 200 pieces of equal size kept only 10 of them (6% of the area)."""
    m = np.zeros((200, 400), bool)
    for r in range(10):
        for c in range(20):
            m[r * 20 + 3:r * 20 + 13, c * 20 + 3:c * 20 + 13] = True
    res = mask_to_polygons(m, max_polygons=1000)
    assert res.parts == 200 and len(res.polygons) == 200 and res.coverage == 1.0
    assert (raster(res.polygons, 400, 200) == m).all()
    capped = mask_to_polygons(m)  # the default cap: 100 parts, and it says so
    assert len(capped.polygons) == 100 and capped.coverage == 0.5
    assert capped.describe() == "100 of 200 parts, 50.0% of the mask"


def test_polygon_to_mask_needs_three_points():
    with pytest.raises(ValueError, match="at least 3"):
        polygon_to_mask([(0, 0), (1, 1)], 4, 4)


def test_crop_to_rle_equals_pycocotools_on_the_full_mask():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(3)
    for _ in range(60):
        H, W = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        y0, x0 = int(rng.integers(0, H)), int(rng.integers(0, W))
        h, w = int(rng.integers(1, H - y0 + 1)), int(rng.integers(1, W - x0 + 1))
        if rng.random() < 0.3:
            y0, h = 0, H  # full-height crops: runs continue across columns
        crop = rng.random((h, w)) < rng.choice([0.1, 0.5, 0.95])
        full = np.zeros((H, W), np.uint8)
        full[y0:y0 + h, x0:x0 + w] = crop
        ref = mask_utils.encode(np.asfortranarray(full))
        assert crop_to_rle(crop, y0, x0, H, W) == {"size": [H, W], "counts": ref["counts"].decode("ascii")}


def test_crop_iou_and_resize():
    a = np.ones((2, 2), bool)
    assert crop_iou(a, (0, 0), a, (0, 0)) == 1.0
    assert crop_iou(a, (0, 0), a, (1, 1)) == pytest.approx(1 / 7)
    assert crop_iou(a, (0, 0), a, (5, 5)) == 0.0
    assert crop_iou(np.zeros((0, 0), bool), (0, 0), np.zeros((0, 0), bool), (0, 0)) == 0.0
    m = np.array([[1, 0], [0, 1]], bool)
    np.testing.assert_array_equal(resize_nearest(m, 4, 4), np.kron(m, np.ones((2, 2), bool)))
