"""Tests of ovsam_core.images: formats, modes, intensity rules, channels, errors, properties.

Every input is generated in tmp_path or in memory; the whole file runs in a few seconds.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from ovsam_core import images
from ovsam_core.images import ImageError, LoadedImage, image_digest, load_image

tifffile = pytest.importorskip("tifffile")

RNG = np.random.default_rng(1234)


def _rgb(h: int = 12, w: int = 17) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(img: Image.Image, path: Path, fmt: str, **kw) -> Path:
    img.save(path, fmt, **kw)
    return path


def _check_valid(out: LoadedImage, h: Optional[int] = None, w: Optional[int] = None) -> None:
    assert isinstance(out, LoadedImage)
    rgb = out.rgb
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.flags.c_contiguous and not rgb.flags.writeable
    if h is not None:
        assert (out.height, out.width) == (h, w)
    assert out.digest == image_digest(rgb)


def _error(source, match: str, **kw) -> str:
    with pytest.raises(ImageError) as info:
        load_image(source, **kw)
    msg = str(info.value)
    assert match in msg, msg
    assert "\n" not in msg and "\r" not in msg and len(msg.splitlines()) == 1
    return msg


@pytest.fixture
def no_tifffile(monkeypatch):
    """Run the TIFF paths as if tifffile were not installed (the Pillow fallback)."""
    monkeypatch.setattr(images, "_tifffile", lambda: None)


# ------------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    "fmt, ext, kw",
    [("PNG", "png", {}), ("BMP", "bmp", {}), ("TIFF", "tif", {}), ("WEBP", "webp", {"lossless": True})],
)
def test_lossless_formats_round_trip(tmp_path, fmt, ext, kw):
    a = _rgb()
    path = _save(Image.fromarray(a), tmp_path / f"x.{ext}", fmt, **kw)
    for src in (path, str(path), path.read_bytes()):
        out = load_image(src)
        _check_valid(out, 12, 17)
        np.testing.assert_array_equal(out.rgb, a)
        assert out.original_dtype == "uint8" and out.original_shape == (12, 17, 3)
    assert load_image(str(path)).source == str(path)
    assert load_image(path.read_bytes()).source is None


def test_jpeg_round_trip(tmp_path):
    a = np.zeros((32, 48, 3), np.uint8)
    a[:16] = (200, 30, 30)
    a[16:] = (20, 40, 220)
    path = _save(Image.fromarray(a), tmp_path / "x.jpg", "JPEG", quality=95)
    out = load_image(path)
    _check_valid(out, 32, 48)
    with Image.open(path) as im:
        np.testing.assert_array_equal(out.rgb, np.asarray(im.convert("RGB")))
    # lossy, and chroma is subsampled: compare away from the colour edge
    assert np.abs(out.rgb[2:12].astype(int) - a[2:12]).max() <= 12
    assert np.abs(out.rgb[20:30].astype(int) - a[20:30]).max() <= 12


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (9, 5), c) for c in ((255, 0, 0), (0, 255, 0))]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    out = load_image(path)
    _check_valid(out, 5, 9)
    assert tuple(out.rgb[0, 0]) == (255, 0, 0)


def test_pil_image_and_array_sources_agree(tmp_path):
    a = _rgb()
    by_pil = load_image(Image.fromarray(a))
    by_arr = load_image(a)
    path = _save(Image.fromarray(a), tmp_path / "x.png", "PNG")
    by_file = load_image(path)
    assert by_pil.digest == by_arr.digest == by_file.digest
    assert by_pil == by_arr and by_arr != by_file  # equality includes the source
    assert hash(by_pil) == hash(by_arr)
    assert "digest" in repr(by_file)
    np.testing.assert_array_equal(by_file.to_pil(), a)


# ------------------------------------------------------------------------------- orientation


def _exif_jpeg(path: Path, a: np.ndarray, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def _marked(h: int = 40, w: int = 64) -> np.ndarray:
    """Grey image with a red block in its top-left corner."""
    a = np.full((h, w, 3), 128, np.uint8)
    a[:16, :16] = (255, 0, 0)
    return a


def _is_red(px) -> bool:
    r, g, b = (int(v) for v in px)
    return r > 200 and g < 60 and b < 60


def test_exif_orientation_6_rotates_clockwise(tmp_path):
    out = load_image(_exif_jpeg(tmp_path / "o6.jpg", _marked(), 6))
    _check_valid(out, 64, 40)  # H and W swapped
    assert _is_red(out.rgb[4, -4])  # top-left corner turned to top-right
    assert not _is_red(out.rgb[4, 4])
    assert out.original_shape == (40, 64, 3)  # as stored in the file


def test_exif_orientation_3_rotates_180(tmp_path):
    path = _exif_jpeg(tmp_path / "o3.jpg", _marked(), 3)
    for src in (path, path.read_bytes(), Image.open(path)):
        out = load_image(src)
        _check_valid(out, 40, 64)
        assert _is_red(out.rgb[-4, -4]) and not _is_red(out.rgb[4, 4])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_tifffile_matches_pillow(tmp_path, monkeypatch, orientation):
    a = _rgb(5, 7)
    path = tmp_path / "o.tif"
    tifffile.imwrite(path, a, photometric="rgb", extratags=[(274, 3, 1, orientation, True)])
    by_tifffile = load_image(path).rgb
    monkeypatch.setattr(images, "_tifffile", lambda: None)
    by_pillow = load_image(path).rgb
    np.testing.assert_array_equal(by_tifffile, by_pillow)
    assert by_tifffile.shape == ((7, 5, 3) if orientation >= 5 else (5, 7, 3))


# ------------------------------------------------------------------------------- modes


def test_rgba_alpha_dropped_not_composited(tmp_path):
    a = np.zeros((4, 5, 4), np.uint8)
    a[..., :3] = (10, 200, 30)
    a[..., 3] = 0  # fully transparent: the colour is kept anyway
    path = _save(Image.fromarray(a, "RGBA"), tmp_path / "a.png", "PNG")
    out = load_image(path)
    assert (out.rgb == (10, 200, 30)).all()
    assert out.original_shape == (4, 5, 4)
    # a 4-channel array is RGBA too
    np.testing.assert_array_equal(load_image(a).rgb, a[..., :3])


def test_la_grey_with_alpha(tmp_path):
    g = RNG.integers(0, 256, (6, 8), dtype=np.uint8)
    la = Image.merge("LA", [Image.fromarray(g), Image.new("L", (8, 6), 7)])
    out = load_image(_save(la, tmp_path / "la.png", "PNG"))
    np.testing.assert_array_equal(out.rgb, np.repeat(g[..., None], 3, -1))


def test_palette(tmp_path):
    a = np.zeros((6, 8, 3), np.uint8)
    a[:3] = (255, 0, 0)
    a[3:] = (0, 0, 255)
    p = Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    assert p.mode == "P"
    for src in (_save(p, tmp_path / "p.png", "PNG"), _save(p, tmp_path / "p.gif", "GIF"), p):
        np.testing.assert_array_equal(load_image(src).rgb, a)


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (4, 3), 1)
    p.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    p.info["transparency"] = 1
    out = load_image(_save(p, tmp_path / "pt.png", "PNG", transparency=1))
    assert (out.rgb == (10, 20, 30)).all()


def test_cmyk(tmp_path):
    cmyk = Image.fromarray(RNG.integers(0, 256, (6, 8, 4), dtype=np.uint8), "CMYK")
    expected = np.asarray(cmyk.convert("RGB"))
    np.testing.assert_array_equal(load_image(cmyk).rgb, expected)
    out = load_image(_save(cmyk, tmp_path / "c.tif", "TIFF"))  # tifffile defers to Pillow
    np.testing.assert_array_equal(out.rgb, expected)
    jpg = load_image(_save(cmyk, tmp_path / "c.jpg", "JPEG", quality=95))
    _check_valid(jpg, 6, 8)


def test_ycbcr_and_bilevel():
    y = Image.fromarray(_rgb()).convert("YCbCr")
    np.testing.assert_array_equal(load_image(y).rgb, np.asarray(y.convert("RGB")))
    bits = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    out = load_image(bits)
    assert out.original_dtype == "bool"
    np.testing.assert_array_equal(out.rgb[..., 0], [[0, 255], [255, 0]])


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_high_depth_pil_modes_are_rescaled(tmp_path, mode):
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    a = np.linspace(0, 1000, 20 * 30).reshape(20, 30).astype(dtype)
    im = Image.fromarray(a) if mode != "I;16" else Image.frombytes("I;16", (30, 20), a.tobytes())
    assert im.mode == mode
    path = _save(im, tmp_path / "x.tif", "TIFF")
    for src in (im, path):
        out = load_image(src, percentiles=None)
        g = out.rgb[..., 0]
        assert g[0, 0] == 0 and g[-1, -1] == 255
        assert (np.diff(g.ravel().astype(int)) >= 0).all()
        assert (out.rgb[..., 0] == out.rgb[..., 2]).all()


def test_16bit_png(tmp_path):
    a = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    path = _save(Image.fromarray(a), tmp_path / "g16.png", "PNG")
    out = load_image(path, percentiles=None)
    assert out.rgb[0, 0, 0] == 0 and out.rgb[-1, -1, 0] == 255


# ------------------------------------------------------------------------------- intensities


def _check_percentile_mapping(values: np.ndarray, grey: np.ndarray, pct=(1.0, 99.8)) -> None:
    lo, hi = np.percentile(values[np.isfinite(values)], pct)
    assert (grey[values <= lo] == 0).all()
    assert (grey[values >= hi] == 255).all()
    inside = (values > lo) & (values < hi)
    assert inside.any()
    order = np.argsort(values[inside], kind="stable")
    assert (np.diff(grey[inside][order].astype(int)) >= 0).all()  # ordering kept
    expected = np.rint((values[inside] - lo) / (hi - lo) * 255)
    assert np.abs(grey[inside].astype(int) - expected).max() <= 1


@pytest.mark.parametrize("reader", ["tifffile", "pillow"])
def test_16bit_tiff_percentile_normalisation(tmp_path, monkeypatch, reader):
    a = RNG.gamma(2.0, 3000.0, (48, 64)).clip(0, 65535).astype(np.uint16)
    path = tmp_path / "g16.tif"
    tifffile.imwrite(path, a)
    if reader == "pillow":
        monkeypatch.setattr(images, "_tifffile", lambda: None)
    out = load_image(path)
    _check_valid(out, 48, 64)
    assert out.original_dtype == "uint16" and out.original_shape == (48, 64)
    _check_percentile_mapping(a.astype(np.float64), out.rgb[..., 0])
    # custom percentiles and min-max
    p5 = load_image(path, percentiles=(5, 95)).rgb[..., 0]
    _check_percentile_mapping(a.astype(np.float64), p5, (5, 95))
    mm = load_image(path, percentiles=None).rgb[..., 0]
    assert mm[a == a.min()].max() == 0 and mm[a == a.max()].min() == 255


def test_uint8_passes_through_unchanged():
    a = RNG.integers(100, 120, (9, 9), dtype=np.uint8)  # narrow range: not stretched
    np.testing.assert_array_equal(load_image(a).rgb[..., 1], a)
    np.testing.assert_array_equal(load_image(a, percentiles=None).rgb[..., 1], a)


def test_float32_tiff_with_nan_and_inf(tmp_path):
    a = RNG.normal(0.0, 1.0, (32, 40)).astype(np.float32)
    a[0, :5] = np.nan
    a[1, :3] = np.inf
    a[2, :3] = -np.inf
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, a)
    out = load_image(path)
    grey = out.rgb[..., 0]
    assert out.original_dtype == "float32"
    assert (grey[0, :5] == 0).all() and (grey[1, :3] == 0).all() and (grey[2, :3] == 0).all()
    finite = np.isfinite(a)
    _check_percentile_mapping(np.where(finite, a, np.nan).astype(np.float64)[finite], grey[finite])


def test_all_nan_and_constant_images_are_black():
    for a in (
        np.full((5, 6), np.nan, np.float32),
        np.full((5, 6), 1234, np.uint16),
        np.full((5, 6), -3.5, np.float64),
        np.full((5, 6, 3), 7, np.int32),
        np.array([[np.inf, 2.0], [2.0, np.nan]]),
    ):
        out = load_image(a)
        assert (out.rgb == 0).all(), a
        assert (load_image(a, percentiles=None).rgb == 0).all()


def test_sparse_image_falls_back_to_min_max():
    a = np.zeros((100, 100), np.uint16)
    a[50, 50] = 4000  # one bright spot: both percentiles are 0
    grey = load_image(a).rgb[..., 0]
    assert grey[50, 50] == 255 and grey.sum() == 255


def test_huge_float64_values_do_not_overflow():
    a = np.array([[-1.7e308, 1.7e308], [0.0, 1e-300]])
    grey = load_image(a, percentiles=None).rgb[..., 0]
    np.testing.assert_array_equal(grey, [[0, 255], [128, 128]])
    tiny = np.array([[0.0, 5e-324], [5e-324, 0.0]])
    np.testing.assert_array_equal(load_image(tiny, percentiles=None).rgb[..., 0], [[0, 255], [255, 0]])


def test_bool_array():
    a = np.array([[True, False], [False, True]])
    out = load_image(a)
    np.testing.assert_array_equal(out.rgb[..., 0], [[255, 0], [0, 255]])
    assert out.original_dtype == "bool"


def test_big_endian_and_non_contiguous_arrays():
    a = RNG.integers(0, 60000, (3, 20, 30)).astype(np.uint16)
    ref = load_image(a)
    np.testing.assert_array_equal(load_image(a.astype(">u2")).rgb, ref.rgb)
    f = RNG.random((20, 30)).astype(">f8")
    np.testing.assert_array_equal(load_image(f).rgb, load_image(f.astype("<f8")).rgb)
    b = _rgb(40, 60)
    view = b[::2, ::3]
    out = load_image(view)
    np.testing.assert_array_equal(out.rgb, view)
    hwc = np.ascontiguousarray(b.transpose(2, 0, 1)).transpose(1, 2, 0)  # F-ordered-ish view
    np.testing.assert_array_equal(load_image(hwc).rgb, b)


def test_result_does_not_alias_the_input():
    a = _rgb()
    out = load_image(a)
    assert not np.shares_memory(out.rgb, a)
    a[:] = 0
    assert out.rgb.any()
    with pytest.raises(ValueError):
        out.rgb[0, 0, 0] = 1


def test_one_pixel_and_leading_singleton_axes():
    _check_valid(load_image(np.array([[7]], np.uint8)), 1, 1)
    _check_valid(load_image(np.zeros((1, 1, 3), np.float32)), 1, 1)
    batch = RNG.random((1, 3, 8, 9)).astype(np.float32)  # (N=1, C, H, W)
    _check_valid(load_image(batch), 8, 9)
    _check_valid(load_image(np.zeros((1, 1, 8, 9), np.uint16)), 8, 9)


# ------------------------------------------------------------------------------- channels


def _stack(c: int = 4, h: int = 10, w: int = 12) -> np.ndarray:
    """(C, H, W) uint8 stack whose channel k is constant 10 * (k + 1)."""
    return np.stack([np.full((h, w), 10 * (k + 1), np.uint8) for k in range(c)])


def test_channels_select_and_order_chw_and_hwc():
    chw = _stack(5)
    hwc = chw.transpose(1, 2, 0)
    for arr in (chw, hwc, np.ascontiguousarray(hwc)):
        one = load_image(arr, channels=[1]).rgb
        assert (one == 20).all()
        three = load_image(arr, channels=[0, 2, 1]).rgb
        assert tuple(three[0, 0]) == (10, 30, 20)
        two = load_image(arr, channels=[3, 4]).rgb
        assert tuple(two[0, 0]) == (40, 50, 0)
        assert load_image(arr, channels=2).rgb[0, 0, 0] == 30
        _check_valid(load_image(arr, channels=[0, 0, 0]), 10, 12)


def test_channels_on_rgb_and_grey_images():
    a = _rgb()
    np.testing.assert_array_equal(load_image(a, channels=[2, 1, 0]).rgb, a[..., ::-1])
    np.testing.assert_array_equal(load_image(Image.fromarray(a), channels=[1]).rgb[..., 2], a[..., 1])
    g = a[..., 0]
    np.testing.assert_array_equal(load_image(g, channels=[0]).rgb[..., 1], g)


def test_two_channels_default_and_grey_default():
    two = _stack(2)
    assert tuple(load_image(two).rgb[0, 0]) == (10, 20, 0)
    assert tuple(load_image(two.transpose(1, 2, 0)).rgb[0, 0]) == (10, 20, 0)
    assert tuple(load_image(_stack(1)).rgb[0, 0]) == (10, 10, 10)


def test_channels_rescaled_independently():
    k = np.arange(64).reshape(8, 8)
    a = np.stack([k * 10, k * 900])  # proportional, very different ranges
    rgb = load_image(a.astype(np.uint16), percentiles=None).rgb
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 1])  # each stretched to 0..255
    assert rgb[..., 0].max() == 255 and (rgb[..., 2] == 0).all()


def test_too_many_channels_need_a_choice():
    msg = _error(_stack(5), "the image has 5 channels")
    assert "channels=[0]" in msg and "--channels" in msg
    _error(_stack(7).transpose(1, 2, 0), "the image has 7 channels")
    # an explicit channel axis makes 4 channels a stack, not RGBA
    _error(_stack(4), "the image has 4 channels", channel_axis=0)
    _check_valid(load_image(_stack(4), channel_axis=0, channels=[3]), 10, 12)


def test_channel_axis_overrides_the_guess():
    a = RNG.random((6, 25, 20)).astype(np.float32)  # guessed: (C=6, H=25, W=20)
    _check_valid(load_image(a, channels=[0]), 25, 20)
    _check_valid(load_image(a, channel_axis=-1, channels=[0]), 6, 25)
    _check_valid(load_image(a, channel_axis=1, channels=[0, 1]), 6, 20)
    _check_valid(load_image(a, channel_axis=0, channels=[0]), 25, 20)
    _error(RNG.random((6, 5, 20)), "cannot tell which axis", channels=[0])  # middle axis smallest
    _error(RNG.random((30, 5, 30)), "cannot tell which axis", channels=[0])
    _check_valid(load_image(RNG.random((30, 5, 30)), channel_axis=1, channels=[0]), 30, 30)


def test_multichannel_tiffs(tmp_path):
    data = RNG.integers(0, 4000, (5, 16, 24)).astype(np.uint16)
    ij = tmp_path / "ij.tif"
    tifffile.imwrite(ij, data, imagej=True, metadata={"axes": "CYX"})
    plain = tmp_path / "plain.tif"  # shaped pages, axes unknown to the reader
    tifffile.imwrite(plain, data)
    contig = tmp_path / "contig.tif"  # (H, W, C) samples, min-is-black
    tifffile.imwrite(contig, data.transpose(1, 2, 0), photometric="minisblack", planarconfig="contig")
    for path in (ij, plain, contig):
        _error(path, "the image has 5 channels")
        out = load_image(path, channels=[0, 2, 1])
        _check_valid(out, 16, 24)
        for k, c in enumerate((0, 2, 1)):
            _check_percentile_mapping(data[c].astype(float), out.rgb[..., k])
    # a 4-channel ImageJ stack is not RGBA
    four = tmp_path / "four.tif"
    tifffile.imwrite(four, data[:4], imagej=True, metadata={"axes": "CYX"})
    _error(four, "the image has 4 channels")
    # a 3-channel stack is shown as RGB
    three = tmp_path / "three.tif"
    tifffile.imwrite(three, data[:3], imagej=True, metadata={"axes": "CYX"})
    _check_valid(load_image(three), 16, 24)


def test_hyperstack_and_singleton_axes(tmp_path):
    z = RNG.integers(0, 4000, (1, 2, 16, 24)).astype(np.uint16)  # Z=1 dropped, C=2
    path = tmp_path / "zc.tif"
    tifffile.imwrite(path, z, imagej=True, metadata={"axes": "ZCYX"})
    _check_valid(load_image(path), 16, 24)
    zc = RNG.integers(0, 4000, (3, 2, 16, 24)).astype(np.uint16)
    path = tmp_path / "zc3.tif"
    tifffile.imwrite(path, zc, imagej=True, metadata={"axes": "ZCYX"})
    _error(path, "4-D TIFF stack (axes ZCYX")


def test_multipage_tiff_pillow_fallback(tmp_path, no_tifffile):
    pages = [np.full((6, 8), v, np.uint16) * np.arange(8, dtype=np.uint16) for v in (1, 2, 3, 4)]
    path = tmp_path / "pages.tif"
    Image.fromarray(pages[0]).save(path, save_all=True, append_images=[Image.fromarray(p) for p in pages[1:]])
    _error(path, "the image has 4 channels")
    out = load_image(path, channels=[3, 0], percentiles=None)
    _check_valid(out, 6, 8)
    assert out.original_shape == (4, 6, 8)
    assert out.rgb[0, -1, 0] == 255 and out.rgb[0, 0, 0] == 0


def test_tifffile_bool_mask_round_trip(tmp_path):
    m = RNG.random((7, 9)) > 0.5
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, m)
    np.testing.assert_array_equal(load_image(path).rgb[..., 0], m * 255)


# ------------------------------------------------------------------------------- errors


def test_file_errors(tmp_path, monkeypatch):
    _error(tmp_path / "nope.jpg", f"cannot read image '{tmp_path / 'nope.jpg'}': no such file")
    monkeypatch.chdir(tmp_path)
    msg = _error("rel.png", "cannot read image 'rel.png': no such file (looked for ")
    assert str(tmp_path / "rel.png") in msg
    _error(tmp_path, "it is a directory")
    (tmp_path / "empty.png").write_bytes(b"")
    _error(tmp_path / "empty.png", "cannot read image '" + str(tmp_path / "empty.png") + "': file is empty")
    _error(b"", "cannot read image <bytes>: the data is empty")
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image at all")
    _error(tmp_path / "junk.jpg", "not a recognised image format")
    _error(bytearray(b"\x00" * 100), "not a recognised image format")


def test_newlines_in_paths_stay_on_one_line(tmp_path):
    _error(tmp_path / "a\nb.png", "no such file")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "WEBP", "BMP"])
def test_truncated_files(tmp_path, fmt):
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, fmt)
    data = buf.getvalue()
    for cut in (len(data) // 2, 40, 9):
        path = tmp_path / f"cut{cut}.{fmt.lower()}"
        path.write_bytes(data[:cut])
        try:
            out = load_image(path)  # some decoders pad short data; then the image is valid
        except ImageError as e:
            assert len(str(e).splitlines()) == 1
            assert str(path) in str(e)
        else:
            _check_valid(out)


def test_array_errors():
    _error(
        np.zeros((2, 3, 4, 5, 6)),
        "unsupported image shape (2, 3, 4, 5, 6): expected (H, W), (H, W, C) or (C, H, W)",
    )
    _error(np.zeros(5), "unsupported image shape (5,)")
    _error(np.array(3.0), "unsupported image shape ()")
    _error(np.zeros((4, 4), np.complex64), "unsupported image dtype complex64")
    _error(np.zeros((4, 4), object), "unsupported image dtype object")
    _error(np.zeros((4, 4), "U3"), "unsupported image dtype <U3")
    _error(np.zeros((0, 5)), "empty image of shape (0, 5)")
    _error(np.zeros((3, 0, 5), np.uint8), "empty image of shape (3, 0, 5)")
    _error([[1, 2], [3, 4]], "unsupported image source of type list")
    _error(12, "unsupported image source of type int")


def test_argument_errors():
    a = _rgb()
    _error(a, "channel 3 is out of range: the image has 3 channels (valid indices 0..2)", channels=[0, 3])
    _error(a[..., 0], "channel 1 is out of range: the image has 1 channel (valid indices 0..0)", channels=[1])
    _error(a, "channel index -1 is negative", channels=[-1])
    _error(a, "channels must list 1 to 3 channel indices", channels=[0, 1, 2, 0])
    _error(a, "channels must list 1 to 3 channel indices", channels=[])
    _error(a, "channels must be channel indices", channels=["red"])
    _error(a, "percentiles must satisfy 0 <= low < high <= 100", percentiles=(50, 10))
    _error(a, "percentiles must satisfy", percentiles=(-1, 100))
    _error(a, "percentiles must be two numbers", percentiles=(1,))
    _error(a, "channel_axis=5 is out of range", channel_axis=5)
    _error(a[..., 0], "channel_axis=0 given but the image of shape (12, 17) is 2-D", channel_axis=0)
    _error(a, "channel_axis must be an integer", channel_axis="last")


def test_loaded_image_validates_and_digest():
    with pytest.raises(ImageError):
        LoadedImage(rgb=np.zeros((2, 2), np.uint8))
    with pytest.raises(ImageError, match="image_digest needs"):
        image_digest(np.zeros((2, 2, 3), np.float32))
    a = _rgb()
    li = LoadedImage(rgb=a.copy())
    assert li.digest == image_digest(a) and li.original_shape == a.shape
    # same bytes, other shape: other digest
    flat = np.zeros((2, 6, 3), np.uint8)
    assert image_digest(flat) != image_digest(flat.reshape(3, 4, 3))
    assert len(image_digest(flat)) == 64


# ------------------------------------------------------------------------------- properties

_DTYPES = [np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]


def _elements(dtype):
    if dtype == np.float32:
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if dtype == np.float64:
        return st.floats(allow_nan=True, allow_infinity=True)
    return None  # hypothesis' default: the full range of the dtype


@st.composite
def _arrays(draw):
    dtype = draw(st.sampled_from(_DTYPES))
    h = draw(st.integers(1, 64))
    w = draw(st.integers(1, 64))
    c = draw(st.sampled_from([1, 2, 3, 4, 5]))
    layout = draw(st.sampled_from(["hw", "hwc", "chw"]))
    shape = {"hw": (h, w), "hwc": (h, w, c), "chw": (c, h, w)}[layout]
    fill = draw(st.sampled_from(["random", "constant"]))
    if fill == "constant":
        elements = _elements(dtype)
        elements = hnp.from_dtype(np.dtype(dtype)) if elements is None else elements
        arr = np.full(shape, draw(elements), dtype=dtype)
    else:
        arr = draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))
    return arr, layout, h, w, c


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    case=_arrays(),
    channels=st.one_of(st.none(), st.lists(st.integers(0, 5), min_size=1, max_size=3)),
    percentiles=st.sampled_from([(1.0, 99.8), (0.0, 100.0), None]),
)
def test_property_any_array_loads_or_raises_image_error(case, channels, percentiles):
    arr, layout, h, w, c = case
    axis = {"hw": None, "hwc": -1, "chw": 0}[layout]
    for kwargs in ({"channel_axis": axis}, {}):
        try:
            out = load_image(arr, channels=channels, percentiles=percentiles, **kwargs)
        except ImageError as e:
            assert len(str(e).splitlines()) == 1 and str(e)
            event(f"ImageError: {str(e)[:30]}")
            continue
        event("loaded")
        if "channel_axis" not in kwargs:
            _check_valid(out)  # the guessed layout may differ from the generated one
            continue
        _check_valid(out, h, w)
        hwc = arr[..., None] if layout == "hw" else np.moveaxis(arr, axis, -1)
        if arr.dtype == np.uint8 and channels is None and hwc.shape[2] in (1, 3):
            np.testing.assert_array_equal(out.rgb, np.broadcast_to(hwc, (h, w, 3)))  # passed through
        if arr.dtype == np.bool_ and channels is None and hwc.shape[2] in (1, 3):
            np.testing.assert_array_equal(out.rgb, np.broadcast_to(hwc, (h, w, 3)) * np.uint8(255))


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data", "ignore:Truncated File Read", "ignore::UserWarning")
@settings(max_examples=100, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=300),
    prefix=st.sampled_from([b"", b"II*\x00", b"MM\x00*", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"RIFF"]),
)
def test_property_random_bytes_never_crash(data, prefix):
    try:
        out = load_image(prefix + data)
    except ImageError as e:
        assert len(str(e).splitlines()) == 1
    else:
        _check_valid(out)


@pytest.mark.parametrize("compression", ["tiff_lzw", "tiff_deflate", "packbits"])
def test_compressed_16bit_tiff(tmp_path, compression):
    a = RNG.integers(0, 4000, (20, 30), dtype=np.uint16)
    path = _save(Image.fromarray(a), tmp_path / "c.tif", "TIFF", compression=compression)
    out = load_image(path)
    _check_valid(out, 20, 30)
    _check_percentile_mapping(a.astype(np.float64), out.rgb[..., 0])
