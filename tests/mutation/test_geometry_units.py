"""Unit tests of ``ovsam_core.geometry``: polygon rasterisation, the cascaded distance transform
(values pinned for a single source: the algorithm upstream's evaluation prompts depend on) and
the centre point. Part of the default run and of ``bash tests/mutation/run.sh``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ovsam_core.geometry import center_point, distance_transform, polygons_to_mask


def test_polygons_to_mask_union_of_polygons_and_float_coordinates():
    m = polygons_to_mask([[1, 1, 4, 1, 4, 3, 1, 3], ["6", "5", "9", "5", "9", "8", "6", "8"]], 10, 12)
    assert m.shape == (10, 12) and m.dtype == bool
    expected = np.zeros((10, 12), bool)
    expected[1:3, 1:4] = True
    expected[5:8, 6:9] = True
    np.testing.assert_array_equal(m, expected)
    one = polygons_to_mask([[0.5, 0.5, 3.5, 0.5, 3.5, 2.5, 0.5, 2.5]], 4, 5)
    assert one.shape == (4, 5) and one.sum() == 6


def _single_source(h=9, w=11, y=4, x=4) -> torch.Tensor:
    img = torch.zeros(1, 1, h, w)
    img[0, 0, y, x] = 1.0
    return img


ROW_K3 = [3.8328, 2.8328, 1.8328, 1.0, 0.0, 1.0, 1.8328, 2.8328, 3.8328, 4.8328, 5.8328]
DIAG_K3 = [4.4142, 3.4142, 2.4142, 1.4142, 0.0, 1.4142, 2.4142, 3.4142, 4.4142]
ROW_K5 = [3.7230, 2.7947, 2.0, 1.0, 0.0, 1.0, 2.0, 2.7947, 3.7230, 4.7947, 5.7230]
DIAG_K5 = [4.8284, 3.3479, 2.8284, 1.4142, 0.0, 1.4142, 2.8284, 3.3479, 4.8284]
ROW_K3_H02 = [3.955, 2.955, 1.955, 1.0, 0.0, 1.0, 1.955, 2.955, 3.955, 4.955, 5.955]


@pytest.mark.parametrize("ks,h,row,diag,far", [(3, 0.35, ROW_K3, DIAG_K3, 5.8328), (5, 0.35, ROW_K5, DIAG_K5, 5.7230),
                                               (3, 0.2, ROW_K3_H02, DIAG_K3, 5.955)])
def test_distance_transform_pinned_values(ks, h, row, diag, far):
    d = distance_transform(_single_source(), ks, h)[0, 0]
    assert d.shape == (9, 11) and d.dtype == torch.float32
    np.testing.assert_allclose(d[4].numpy(), row, atol=2e-4)
    np.testing.assert_allclose([float(d[i, i]) for i in range(9)], diag, atol=2e-4)
    np.testing.assert_allclose(d[:, 10].numpy(), [far] * 9, atol=2e-4)


def test_distance_transform_defaults_and_kernel_checks():
    img = _single_source()
    torch.testing.assert_close(distance_transform(img), distance_transform(img, 3, 0.35))
    for bad in (4, 1, 2, 0, -3):
        with pytest.raises(ValueError, match=f"^kernel_size must be an odd integer >= 3, got {bad}$"):
            distance_transform(img, kernel_size=bad)
    distance_transform(img, kernel_size=3)


def test_distance_transform_channels_batches_and_sources_stay_separate():
    img = torch.zeros(2, 2, 7, 8)
    img[0, 0, 0, 0] = 1
    img[0, 1, 6, 7] = 1
    img[1, 0, 3, 3] = 1
    img[1, 1, 3, 3] = 1
    img[1, 1, 3, 4] = 1
    d = distance_transform(img)
    for b, c, src in [(0, 0, (0, 0)), (0, 1, (6, 7)), (1, 0, (3, 3))]:
        one = torch.zeros(1, 1, 7, 8)
        one[0, 0, src[0], src[1]] = 1
        torch.testing.assert_close(d[b, c], distance_transform(one)[0, 0])
    assert d[1, 1, 3, 4] == 0 and d[1, 1, 3, 5] == pytest.approx(1.0, abs=1e-4)
    assert (d[img > 0] == 0).all() and (d[img == 0] > 0).all()


def test_distance_transform_all_sources_no_sources_and_values_above_one():
    assert torch.equal(distance_transform(torch.ones(1, 1, 5, 6)), torch.zeros(1, 1, 5, 6))
    assert torch.equal(distance_transform(torch.zeros(1, 1, 5, 6)), torch.zeros(1, 1, 5, 6))
    img = _single_source()
    torch.testing.assert_close(distance_transform(img * 7.0), distance_transform(img))  # clamped to 1


def test_distance_transform_long_thin_image_reaches_the_far_end():
    img = torch.zeros(1, 1, 1, 40)
    img[0, 0, 0, 0] = 1
    d = distance_transform(img)[0, 0, 0]
    np.testing.assert_allclose(d[:4].numpy(), [0.0, 0.8328, 1.8328, 2.8328], atol=2e-4)  # 1-row: border replicated
    assert d[39] == pytest.approx(38.8328, abs=2e-3)
    assert (d[1:] > 0).all() and bool((d[1:] > d[:-1]).all())


def test_center_point_rectangle_odd_sizes_and_raster_order():
    m = np.zeros((20, 30), bool)
    m[4:11, 10:25] = True  # 7 x 15: the ridge is row 7; first maximum in raster order
    assert center_point(m) == (14, 7)
    m2 = np.zeros((12, 12), bool)
    m2[2:9, 3:10] = True  # 7 x 7 square: the centre
    assert center_point(m2) == (6, 5)
    assert center_point(m2.T.copy()) == (5, 6)


def test_center_point_padding_changes_masks_touching_the_border():
    m = np.zeros((10, 10), bool)
    m[5:, 5:] = True  # touches the bottom/right border
    assert center_point(m) == (9, 9)  # replicated border: the corner is farthest from background
    assert center_point(m, pad_to=(16, 16)) == (7, 7)  # padded with background: the middle
    assert center_point(m, pad_to=(10, 10)) == (9, 9)
    wide = np.zeros((4, 10), bool)
    wide[:, 6:] = True
    assert center_point(wide, pad_to=(4, 16)) != center_point(wide)
    assert center_point(wide, pad_to=(4, 16)) == (7, 0)


def test_center_point_pads_rows_and_columns_separately():
    m = np.zeros((6, 4), bool)
    m[2:, :] = True  # touches the bottom: only columns are padded here
    assert center_point(m, pad_to=(6, 12)) == (0, 5)
    assert center_point(m, pad_to=(12, 4)) == (0, 3)
