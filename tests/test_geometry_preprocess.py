"""Pre-processing frames and the evaluation prompt geometry."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ovsam_core.geometry import center_point, distance_transform, polygons_to_mask
from ovsam_core.preprocess import FrameTransform, normalize_and_pad, resize_pil, resized_size, upsample_masks


@pytest.mark.parametrize("h,w", [(480, 640), (640, 480), (1, 5000), (1024, 1024), (3000, 17)])
def test_resized_size_long_side(h, w):
    for rounding in ("trunc", "round"):
        rh, rw = resized_size(h, w, 1024, rounding)
        assert max(rh, rw) == 1024 and min(rh, rw) <= 1024


def test_frame_roundtrip_both_ways():
    f = FrameTransform((480, 640), (768, 1024), 1024)
    pts = torch.tensor([[0.0, 0.0, 640.0, 480.0], [320.0, 240.0, 10.0, 20.0]])
    model = f.to_model(pts)
    assert torch.allclose(model[0], torch.tensor([0.0, 0.0, 1024.0, 768.0]))
    assert torch.allclose(f.to_original(model), pts)


def test_normalize_and_pad_zero_pad():
    rgb = np.full((10, 20, 3), 128, np.uint8)
    x = normalize_and_pad(rgb, 32)
    assert x.shape == (1, 3, 32, 32)
    assert torch.all(x[..., 10:, :] == 0) and torch.all(x[..., :, 20:] == 0)
    assert torch.allclose(x[0, 0, 0, 0], torch.tensor((128 - 123.675) / 58.395))


def test_resize_pil_truncates():
    img = Image.new("RGB", (333, 100))
    assert resize_pil(img, 1024).shape == (307, 1024, 3)  # int(100 * 1024 / 333) = 307


def test_upsample_masks_to_original_size():
    low = torch.full((2, 1, 64, 64), -5.0)
    low[:, :, :8, :8] = 5.0
    out = upsample_masks(low, FrameTransform((30, 40), (192, 256), 256))
    assert out.shape == (2, 30, 40)
    assert (out[:, :3, :3] > 0).all() and (out[:, 20:, 30:] < 0).all()


def test_polygons_to_mask_square():
    m = polygons_to_mask([[2, 2, 8, 2, 8, 6, 2, 6]], 10, 12)
    assert m.shape == (10, 12) and m.dtype == bool
    ys, xs = np.nonzero(m)
    assert xs.min() == 2 and xs.max() == 7 and ys.min() == 2 and ys.max() == 5


def test_distance_transform_isolated_source():
    img = torch.zeros(1, 1, 9, 9)
    img[0, 0, 4, 4] = 1
    d = distance_transform(img)
    assert d[0, 0, 4, 4] == 0
    assert abs(d[0, 0, 4, 5].item() - 1.0) < 0.05
    assert d[0, 0, 4, 8] > d[0, 0, 4, 6] > d[0, 0, 4, 5]
    with pytest.raises(ValueError, match="odd"):
        distance_transform(img, kernel_size=4)


def test_center_point_of_rectangle_and_padding_choice():
    m = np.zeros((40, 60), bool)
    m[10:21, 5:36] = True            # 11 rows x 31 cols, centre (20, 15)
    x, y = center_point(m)
    # the interior ridge ties along the midline; the first maximum in raster order wins
    assert m[y, x] and y == 15 and 10 <= x <= 12
    assert center_point(m, pad_to=(64, 64)) == (x, y)


def test_center_point_small_masks():
    m = np.zeros((16, 16), bool)
    m[3, 7] = True
    assert center_point(m) == (7, 3)
    m[3, 8] = True
    assert center_point(m) == (7, 3)  # first maximum in raster order
