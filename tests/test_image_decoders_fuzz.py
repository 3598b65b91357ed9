"""Image decoders, both sides: valid files must load exactly, broken ones must raise ImageError.

Valid files are generated separately (every mode each format can store, 16-bit, palette, CMYK,
EXIF / TIFF orientation, 1-pixel sizes) and must load with the orientation applied and the
pixels Pillow's reference conversion gives. Invalid files (truncated anywhere, headers
declaring huge or zero sizes, zero-size arrays) must raise :class:`ImageError` with a
one-line message that names the file and the bad value; nothing else may be raised.
"""
from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image, ImageOps

from ovsam_core.images import ImageError, load_image

pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data", "ignore:Truncated File Read",
                                        "ignore::UserWarning")

#: format -> (save kwargs, modes it stores, whether it carries an orientation tag)
FORMATS = {
    "PNG": ({}, ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"], True),
    "TIFF": ({}, ["1", "L", "P", "RGB", "RGBA", "CMYK", "I;16"], True),
    "BMP": ({}, ["1", "L", "P", "RGB"], False),
    "WEBP": ({"lossless": True}, ["RGB", "RGBA"], True),
    "JPEG": ({"quality": 90}, ["L", "RGB", "CMYK"], True),
}
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _pil_image(mode: str, w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    bands = len(Image.new(mode, (1, 1)).getbands())
    arr = rng.integers(0, 256, (h, w, bands), dtype=np.uint8)
    img = Image.frombytes(mode if mode != "1" else "L", (w, h), arr[..., 0].tobytes() if bands == 1 else arr.tobytes())
    return img.point(lambda v: 255 * (v > 127)).convert("1") if mode == "1" else img


def _encode(img: Image.Image, fmt: str, orientation: int) -> bytes:
    kw = dict(FORMATS[fmt][0])
    if orientation != 1:
        if fmt == "TIFF":
            kw["tiffinfo"] = {274: orientation}
        else:
            exif = Image.Exif()
            exif[0x0112] = orientation
            kw["exif"] = exif
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@st.composite
def valid_files(draw):
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[fmt][1]))
    w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    orientation = draw(st.integers(1, 8)) if FORMATS[fmt][2] else 1
    return fmt, mode, w, h, orientation, _encode(_pil_image(mode, w, h, draw(st.integers(0, 99))), fmt, orientation)


@SETTINGS
@given(case=valid_files())
def test_valid_files_load_with_orientation_and_reference_pixels(tmp_path, case):
    fmt, mode, w, h, orientation, data = case
    path = tmp_path / f"ok.{fmt.lower()}"
    path.write_bytes(data)
    out = load_image(path)
    rh, rw = (w, h) if orientation in (5, 6, 7, 8) else (h, w)
    assert out.rgb.shape == (rh, rw, 3) and out.rgb.dtype == np.uint8
    if mode != "I;16":  # 16-bit is rescaled by percentiles (tested in test_images.py)
        with Image.open(io.BytesIO(data)) as ref:
            expected = np.asarray(ImageOps.exif_transpose(ref).convert("RGB"))
        np.testing.assert_array_equal(out.rgb, expected, err_msg=f"{fmt} {mode} orientation {orientation}")
    else:
        assert out.original_dtype == "uint16"
    assert load_image(data).digest == out.digest  # bytes and path agree


# --------------------------------------------------------------------------------- invalid
@SETTINGS
@given(fmt=st.sampled_from(sorted(FORMATS)), frac=st.floats(0.02, 0.98), seed=st.integers(0, 9))
def test_truncated_files_raise_image_error_naming_the_file(tmp_path, fmt, frac, seed):
    mode = "RGB" if "RGB" in FORMATS[fmt][1] else FORMATS[fmt][1][0]
    data = _encode(_pil_image(mode, 40, 30, seed), fmt, 1)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[:max(1, int(len(data) * frac))])
    with pytest.raises(ImageError) as e, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_image(path)
    assert str(path) in str(e.value) and len(str(e.value).splitlines()) == 1


def _png_declaring(w: int, h: int) -> bytes:
    d = bytearray(_encode(Image.new("RGB", (4, 4)), "PNG", 1))
    d[16:24] = struct.pack(">II", w, h)  # IHDR width, height
    d[29:33] = struct.pack(">I", zlib.crc32(bytes(d[12:29])) & 0xFFFFFFFF)
    return bytes(d)


def _bmp_declaring(w: int, h: int) -> bytes:
    d = bytearray(_encode(Image.new("RGB", (4, 4)), "BMP", 1))
    d[18:26] = struct.pack("<ii", w, h)  # BITMAPINFOHEADER width, height
    return bytes(d)


def _tiff_declaring(w: int, h: int) -> bytes:
    d = bytearray(_encode(Image.new("RGB", (4, 4)), "TIFF", 1))
    ifd = struct.unpack("<I", d[4:8])[0]
    for i in range(struct.unpack("<H", d[ifd:ifd + 2])[0]):
        e = ifd + 2 + 12 * i
        tag = struct.unpack("<H", d[e:e + 2])[0]
        if tag in (256, 257):  # ImageWidth, ImageLength as LONG
            d[e + 2:e + 4] = struct.pack("<H", 4)
            d[e + 8:e + 12] = struct.pack("<I", w if tag == 256 else h)
    return bytes(d)


DECLARING = {"png": _png_declaring, "bmp": _bmp_declaring, "tif": _tiff_declaring}


@settings(max_examples=20, deadline=None, derandomize=True)
@given(ext=st.sampled_from(sorted(DECLARING)), w=st.integers(20_000, 2**31 - 1), h=st.integers(20_000, 2**31 - 1))
def test_header_bombs_are_refused_before_decoding(tmp_path_factory, ext, w, h):
    path = tmp_path_factory.mktemp("bomb") / f"bomb.{ext}"
    path.write_bytes(DECLARING[ext](w, h))
    with pytest.raises(ImageError) as e:
        load_image(path)
    msg = str(e.value)
    assert str(path) in msg and "too large" in msg and f"{w * h} pixels" in msg, msg


@pytest.mark.parametrize("w,h", [(0, 5), (7, 0)])
def test_zero_size_tiff_header_names_the_shape(tmp_path, w, h):
    path = tmp_path / "zero.tif"
    path.write_bytes(_tiff_declaring(w, h))
    with pytest.raises(ImageError, match=rf"empty image of shape \({h}, {w}, 3\)"):
        load_image(path)


@pytest.mark.parametrize("ext", ["png", "bmp"])
@pytest.mark.parametrize("w,h", [(0, 5), (7, 0)])
def test_zero_size_png_bmp_header_names_the_size(tmp_path, ext, w, h):
    """Pillow refuses these headers at identification; the error must name the zero size, not
    call the file an unknown format (from a path and from bytes)."""
    path = tmp_path / f"zero.{ext}"
    path.write_bytes(DECLARING[ext](w, h))
    want = rf"empty image: its header declares width {w} and height {h}"
    with pytest.raises(ImageError, match=want):
        load_image(path)
    with pytest.raises(ImageError, match=want):
        load_image(path.read_bytes())


@given(n=st.integers(1, 50), layout=st.sampled_from(["0n", "n0", "0n3", "n03", "30n"]),
       dtype=st.sampled_from(["uint8", "uint16", "float32", "bool"]))
@settings(max_examples=30, deadline=None, derandomize=True)
def test_zero_size_arrays_name_their_shape(n, layout, dtype):
    shape = tuple({"0": 0, "n": n, "3": 3}[c] for c in layout)
    with pytest.raises(ImageError, match=rf"empty image of shape \({', '.join(map(str, shape))}\)"):
        load_image(np.zeros(shape, dtype))


def test_meta_a_loader_that_rejects_everything_fails_the_valid_side(tmp_path, monkeypatch):
    def reject(*a, **k):
        raise ImageError("cannot read image")

    monkeypatch.setitem(globals(), "load_image", reject)
    with pytest.raises(ImageError):
        test_valid_files_load_with_orientation_and_reference_pixels(tmp_path=tmp_path)
