"""Unit tests of ``ovsam_core.preprocess``: exact sizes, factors, normalisation, padding and the
mask upsampling order. Part of the default run and of ``bash tests/mutation/run.sh``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ovsam_core.preprocess import (PIXEL_MEAN, PIXEL_STD, FrameTransform, normalize_and_pad, resize_cv2,
                                   resize_pil, resized_size, upsample_masks)


def test_sam_statistics():
    assert PIXEL_MEAN == (123.675, 116.28, 103.53) and PIXEL_STD == (58.395, 57.12, 57.375)


def test_scale_xy_is_per_axis_x_then_y():
    f = FrameTransform((100, 400), (256, 1024), 1024)
    assert f.scale_xy == (1024 / 400, 256 / 100) == (2.56, 2.56)
    g = FrameTransform((50, 200), (30, 100), 128)  # different factors per axis
    assert g.scale_xy == (0.5, 0.6)


def test_to_model_and_back_with_unequal_factors():
    g = FrameTransform((50, 200), (30, 100), 128)
    pts = torch.tensor([[10.0, 20.0], [200.0, 50.0]])
    torch.testing.assert_close(g.to_model(pts), torch.tensor([[5.0, 12.0], [100.0, 30.0]]))
    boxes = torch.tensor([[2.0, 10.0, 4.0, 40.0]])
    torch.testing.assert_close(g.to_model(boxes), torch.tensor([[1.0, 6.0, 2.0, 24.0]]))
    torch.testing.assert_close(g.to_original(torch.tensor([[1.0, 6.0, 2.0, 24.0]])), boxes)
    torch.testing.assert_close(g.to_original(g.to_model(pts)), pts)
    x = torch.tensor([4.0, 6.0], dtype=torch.float64)
    assert g.to_model(x).dtype == torch.float64 and g.to_original(x).tolist() == [8.0, 10.0]


@pytest.mark.parametrize("h,w,size,trunc,rnd", [
    (480, 640, 1024, (768, 1024), (768, 1024)),
    (333, 1000, 1024, (340, 1024), (341, 1024)),   # 333 * 1.024 = 340.99
    (1000, 333, 1024, (1024, 340), (1024, 341)),
    (3, 2000, 1024, (1, 1024), (2, 1024)),         # 1.536: trunc 1, round 2
    (1, 5000, 1024, (1, 1024), (1, 1024)),         # 0.2 -> at least one row
    (2000, 1, 1024, (1024, 1), (1024, 1)),
    (10, 10, 25, (25, 25), (25, 25)),
    (7, 9, 4, (3, 4), (3, 4)),                     # 3.11
    (5, 8, 4, (2, 4), (3, 4)),                     # 2.5: round half up
])
def test_resized_size_exact(h, w, size, trunc, rnd):
    assert resized_size(h, w, size, "trunc") == trunc
    assert resized_size(h, w, size, "round") == rnd
    assert all(type(v) is int for v in resized_size(h, w, size, "round") + resized_size(h, w, size, "trunc"))


def test_resize_pil_size_and_bilinear_values():
    img = Image.fromarray(np.arange(0, 256, 16, dtype=np.uint8).reshape(4, 4).repeat(3, 0).reshape(4, 4, 3))
    out = resize_pil(img, 8)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.asarray(img.convert("RGB").resize((8, 8), Image.Resampling.BILINEAR)))
    assert resize_pil(Image.new("L", (333, 100), 7), 1024).shape == (307, 1024, 3)  # grey -> RGB, trunc
    assert not np.array_equal(out, np.asarray(img.resize((8, 8), Image.Resampling.NEAREST)))


def test_resize_cv2_size_rounding_and_linear_values():
    cv2 = pytest.importorskip("cv2")
    rgb = np.random.default_rng(0).integers(0, 256, (5, 8, 3), dtype=np.uint8)
    out = resize_cv2(rgb, 4)
    assert out.shape == (3, 4, 3)  # 2.5 rounds to 3 (PIL's path truncates to 2)
    np.testing.assert_array_equal(out, cv2.resize(rgb, (4, 3), interpolation=cv2.INTER_LINEAR))
    assert not np.array_equal(resize_cv2(rgb, 16), cv2.resize(rgb, (16, 10), interpolation=cv2.INTER_NEAREST))


def test_normalize_and_pad_values_channels_and_padding():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    rgb[1, 2] = (0, 255, 10)
    x = normalize_and_pad(rgb, 5)
    assert x.shape == (1, 3, 5, 5) and x.dtype == torch.float32
    exp = [(200 - 123.675) / 58.395, (100 - 116.28) / 57.12, (50 - 103.53) / 57.375]
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor(exp))
    torch.testing.assert_close(x[0, :, 1, 2], torch.tensor([(0 - 123.675) / 58.395, (255 - 116.28) / 57.12,
                                                             (10 - 103.53) / 57.375]))
    assert torch.all(x[0, :, 2:, :] == 0) and torch.all(x[0, :, :, 3:] == 0)  # bottom and right only
    assert torch.all(x[0, :, :2, :3] != 0)
    assert not rgb.flags.writeable or rgb[0, 0, 0] == 200  # input untouched


def test_upsample_masks_is_frame_then_crop_then_original():
    torch.manual_seed(0)
    low = torch.randn(3, 1, 8, 8)
    frame = FrameTransform((15, 20), (24, 32), 32)
    ref = F.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)[..., :24, :32]
    ref = F.interpolate(ref, size=(15, 20), mode="bilinear", align_corners=False)[:, 0]
    out = upsample_masks(low, frame)
    assert out.shape == (3, 15, 20)
    torch.testing.assert_close(out, ref)


def test_upsample_masks_ignores_the_padding_area():
    low = torch.full((1, 1, 16, 16), -4.0)
    low[..., 8:, :] = 9.0  # only in the padding below the resized image (rows 8..15 of 16)
    out = upsample_masks(low, FrameTransform((10, 40), (32, 128), 128))
    assert out.shape == (1, 10, 40)
    assert (out < 0).all()
    tall = upsample_masks(low.transpose(2, 3).contiguous(), FrameTransform((40, 10), (128, 32), 128))
    assert tall.shape == (1, 40, 10) and (tall < 0).all()


def test_resize_cv2_without_opencv_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError, match=r"^the 'cv2' resizer needs OpenCV: pip install 'ovsam\[train\]'$"):
        resize_cv2(np.zeros((4, 4, 3), np.uint8), 8)
