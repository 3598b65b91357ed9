"""Unit tests of ``ovsam_core.masks`` beyond tests/test_masks.py: exact boxes and crops, crop IoU
and nearest resizing against full-canvas references, polygon rasterisation at pixel-centre
boundaries, Douglas-Peucker details, parameters of ``mask_to_polygons`` and multi-strip RLE.
Part of the default run and of ``bash tests/mutation/run.sh``."""
from __future__ import annotations

import numpy as np
import pytest

from ovsam_core.masks import (MaskPolygons, _dp, components, crop_iou, crop_to_rle, mask_box, mask_to_polygons,
                              polygon_to_mask, resize_nearest, simplify, tight_crop)


def test_mask_box_uses_first_and_last_rows_and_columns():
    m = np.zeros((9, 10), np.uint8)
    m[2, 5] = m[4, 1] = m[7, 8] = 3  # three rows, not in column order
    assert mask_box(m) == (1, 2, 9, 8)
    assert all(type(v) is int for v in mask_box(m))
    assert mask_box(np.ones((1, 1), bool)) == (0, 0, 1, 1)
    assert mask_box(np.zeros((0, 4), bool)) is None


def test_tight_crop_values_and_empty():
    m = np.zeros((9, 10), np.uint8)
    m[2, 5] = m[4, 1] = m[7, 8] = 1
    crop, y0, x0 = tight_crop(m)
    assert (y0, x0) == (2, 1) and crop.dtype == bool and crop.flags.c_contiguous
    np.testing.assert_array_equal(crop, m[2:8, 1:9].astype(bool))
    empty, ey, ex = tight_crop(np.zeros((5, 5), bool))
    assert empty.shape == (0, 0) and empty.dtype == bool and (ey, ex) == (0, 0)
    assert type(ey) is int and type(ex) is int


def _canvas_iou(a, a_yx, b, b_yx):
    H = max(a_yx[0] + a.shape[0], b_yx[0] + b.shape[0])
    W = max(a_yx[1] + a.shape[1], b_yx[1] + b.shape[1])
    ca, cb = np.zeros((H, W), bool), np.zeros((H, W), bool)
    ca[a_yx[0]:a_yx[0] + a.shape[0], a_yx[1]:a_yx[1] + a.shape[1]] = a
    cb[b_yx[0]:b_yx[0] + b.shape[0], b_yx[1]:b_yx[1] + b.shape[1]] = b
    u = (ca | cb).sum()
    return (ca & cb).sum() / u if u else 0.0


def test_crop_iou_equals_the_full_canvas_iou():
    rng = np.random.default_rng(7)
    for _ in range(200):
        a = rng.random(tuple(rng.integers(1, 7, 2))) < 0.6
        b = rng.random(tuple(rng.integers(1, 7, 2))) < 0.6
        a_yx, b_yx = tuple(int(v) for v in rng.integers(0, 6, 2)), tuple(int(v) for v in rng.integers(0, 6, 2))
        assert crop_iou(a, a_yx, b, b_yx) == pytest.approx(_canvas_iou(a, a_yx, b, b_yx)), (a_yx, b_yx)
    a = np.ones((2, 3), bool)
    assert crop_iou(a, (4, 1), np.ones((3, 1), bool), (3, 2)) == pytest.approx(2 / 7)
    assert type(crop_iou(a, (0, 0), a, (0, 0))) is float


def _nearest_ref(m, height, width):
    ri = [min(i * m.shape[0] // height, m.shape[0] - 1) for i in range(height)]
    ci = [min(j * m.shape[1] // width, m.shape[1] - 1) for j in range(width)]
    return m[np.ix_(ri, ci)]


@pytest.mark.parametrize("src,dst", [((3, 5), (7, 4)), ((8, 2), (3, 9)), ((5, 5), (5, 2)), ((4, 6), (4, 6)),
                                     ((1, 1), (3, 2)), ((6, 4), (1, 1))])
def test_resize_nearest_against_the_index_formula(src, dst):
    m = np.random.default_rng(sum(src + dst)).random(src) < 0.5
    out = resize_nearest(m.astype(np.uint8), *dst)
    assert out.shape == dst and out.dtype == bool
    np.testing.assert_array_equal(out, _nearest_ref(m, *dst))
    np.testing.assert_array_equal(resize_nearest(np.array([[1, 0, 0, 1]], bool), 1, 2), [[True, False]])


def test_polygon_to_mask_pixel_centres_even_odd_and_clipping():
    sq = [(1, 1), (4, 1), (4, 3), (1, 3)]  # pixel edges: columns 1..3, rows 1..2
    exp = np.zeros((5, 6), bool)
    exp[1:3, 1:4] = True
    np.testing.assert_array_equal(polygon_to_mask(sq, 5, 6), exp)
    np.testing.assert_array_equal(polygon_to_mask([1, 1, 4, 1, 4, 3, 1, 3], 5, 6), exp)  # flat list
    # centres exactly on the boundary: the left/top edge is in, the right/bottom edge is out
    np.testing.assert_array_equal(polygon_to_mask([(0.5, 0.5), (2.5, 0.5), (2.5, 2.5), (0.5, 2.5)], 4, 4),
                                  np.pad(np.ones((2, 2), bool), ((0, 2), (0, 2))))
    tri = polygon_to_mask([(0, 0), (4, 0), (0, 4)], 4, 4)
    # centres on the hypotenuse x + y = 4 are outside (right boundary)
    np.testing.assert_array_equal(tri, np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], bool))
    big = polygon_to_mask([(-5, -5), (20, -5), (20, 20), (-5, 20)], 3, 4)  # clipped to the image
    assert big.shape == (3, 4) and big.all()
    ring = [(0, 0), (6, 0), (6, 6), (0, 6), (0, 0), (2, 2), (4, 2), (4, 4), (2, 4), (2, 2)]
    r = polygon_to_mask(ring, 6, 6)  # even-odd: the inner square is a hole
    assert r.sum() == 36 - 4 and not r[2:4, 2:4].any()
    assert not polygon_to_mask([(10, 10), (12, 10), (12, 12)], 5, 5).any()
    with pytest.raises(ValueError, match="^a polygon needs at least 3 points$"):
        polygon_to_mask([(0, 0), (1, 1)], 4, 4)


def test_douglas_peucker_keep_mask():
    line = np.array([[0, 0], [1, 0.4], [2, 0], [3, 3], [4, 0]], float)
    np.testing.assert_array_equal(_dp(line, 1.0), [True, False, True, True, True])
    np.testing.assert_array_equal(_dp(line, 0.3), [True, True, True, True, True])
    np.testing.assert_array_equal(_dp(line, 0.4), [True, False, True, True, True])  # strictly greater
    np.testing.assert_array_equal(_dp(line, 5.0), [True, False, False, False, True])
    loop = np.array([[0, 0], [2, 0], [2, 2], [0, 0]], float)  # closed: the end equals the start
    np.testing.assert_array_equal(_dp(loop, 1.0), [True, True, True, True])  # 1.41 from the chord
    np.testing.assert_array_equal(_dp(loop, 1.5), [True, False, True, True])
    np.testing.assert_array_equal(_dp(np.array([[0, 0], [1, 1]], float), 0.0), [True, True])


def test_simplify_closed_polygons():
    tri = [(0.0, 0.0), (4.0, 0.0), (0.0, 4.0)]
    assert simplify(tri) == tri
    square = [(0, 0), (1, 0), (2, 0), (3, 0), (3, 1), (3, 2), (3, 3), (2, 3), (1, 3), (0, 3), (0, 2), (0, 1)]
    out = simplify(square, tol=0.5)
    assert sorted(out) == [(0.0, 0.0), (0.0, 3.0), (3.0, 0.0), (3.0, 3.0)] and out[0] == (0.0, 0.0)
    assert all(type(p) is tuple for p in out)
    wiggly = [(float(i), 0.3 * (i % 2)) for i in range(10)] + [(9.0, 5.0), (0.0, 5.0)]
    assert len(simplify(wiggly, tol=0.1)) == 12 and len(simplify(wiggly, tol=0.2)) == 10
    assert simplify(wiggly, tol=0.4) == [(0.0, 0.0), (9.0, 0.3), (9.0, 5.0), (0.0, 5.0)]
    assert simplify(wiggly, tol=0.01, max_points=6) == simplify(wiggly, tol=0.4)  # tol raised until <= 6


def test_mask_polygons_coverage_and_description():
    mp = MaskPolygons(polygons=((),), parts=3, mask_area=8, covered_area=6)
    assert mp.coverage == 0.75 and mp.dropped_parts == 2
    assert mp.describe() == "1 of 3 parts, 75.0% of the mask"
    assert MaskPolygons((), 0, 0, 0).coverage == 1.0


def test_mask_to_polygons_parameters():
    m = np.zeros((20, 20), bool)
    m[1:3, 1:3] = True    # 4 px
    m[10:13, 10:13] = True  # 9 px
    m[18, 18] = True     # 1 px
    res = mask_to_polygons(m, tolerance=0.0)  # min_area=4 keeps the 4-px part (>=)
    assert res.parts == 3 and len(res.polygons) == 2 and res.covered_area == 13 and res.mask_area == 14
    assert polygon_to_mask(res.polygons[0], 20, 20).sum() == 9  # largest first
    assert len(mask_to_polygons(m, min_area=5).polygons) == 1
    assert len(mask_to_polygons(m, min_area=1).polygons) == 3
    one = mask_to_polygons(m, max_polygons=1)
    assert len(one.polygons) == 1 and one.covered_area == 9
    sq = mask_to_polygons(m[10:13, 10:13].copy(), tolerance=0.0).polygons[0]
    assert sorted(sq) == [(0.0, 0.0), (0.0, 3.0), (3.0, 0.0), (3.0, 3.0)]
    shifted = mask_to_polygons(m, tolerance=0.0, min_area=9).polygons[0]
    assert sorted(shifted) == [(10.0, 10.0), (10.0, 13.0), (13.0, 10.0), (13.0, 13.0)]
    yy, xx = np.mgrid[:60, :60]
    disc = (yy - 30) ** 2 + (xx - 30) ** 2 < 25 ** 2
    fine = mask_to_polygons(disc, tolerance=0.0, max_points=10 ** 6).polygons[0]
    assert len(mask_to_polygons(disc, tolerance=3.0).polygons[0]) < len(mask_to_polygons(disc).polygons[0]) < len(fine)
    assert len(mask_to_polygons(disc, max_points=8).polygons[0]) <= 8


def test_components_order_area_then_raster_and_runs():
    m = np.zeros((6, 9), bool)
    m[5, 0:3] = True   # 3 px, later in raster order
    m[0, 6:9] = True   # 3 px, first in raster order
    m[2, 2] = m[3, 3] = True  # 2 px, diagonal
    comps = components(m)
    assert [a for a, _ in comps] == [3, 3, 2]
    assert [int(i[0]) for _, i in comps] == [0, 3, 1]  # run 0 is row 0; run 3 is row 5
    assert components(np.zeros((3, 3), bool)) == []
    gap = np.zeros((3, 5), bool)
    gap[0, 0:2] = True
    gap[1, 3:5] = True  # columns 0-1 and 3-4: not touching
    assert [a for a, _ in components(gap)] == [2, 2]
    touch = gap.copy()
    touch[1, 2] = True  # now diagonal at (0,1)-(1,2)
    assert [a for a, _ in components(touch)] == [5]


def test_crop_to_rle_in_several_column_strips():
    from pycocotools import mask as mask_utils

    h = (1 << 21) + 3  # strip = max(1, 2**22 // h) = 1 column per strip
    crop = np.zeros((h, 3), bool)
    crop[5:9, 0] = crop[h - 2:, 0] = crop[:4, 1] = crop[100:, 2] = True
    full = np.zeros((h + 1, 5), np.uint8)
    full[1:, 1:4] = crop
    ref = mask_utils.encode(np.asfortranarray(full))["counts"].decode("ascii")
    assert crop_to_rle(crop, 1, 1, h + 1, 5) == {"size": [h + 1, 5], "counts": ref}
    empty = crop_to_rle(np.zeros((2, 2), bool), 0, 0, 3, 4)
    assert empty == {"size": [3, 4], "counts": mask_utils.encode(np.zeros((3, 4), np.uint8, order="F"))["counts"].decode()}
    fullm = crop_to_rle(np.ones((3, 4), bool), 0, 0, 3, 4)
    assert fullm["counts"] == mask_utils.encode(np.ones((3, 4), np.uint8, order="F"))["counts"].decode()


def test_mask_to_polygons_of_an_empty_mask():
    assert mask_to_polygons(np.zeros((3, 4), bool)) == MaskPolygons((), 0, 0, 0)
