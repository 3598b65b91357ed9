"""Image input layer: any file, bytes, PIL image or array -> one (H, W, 3) uint8 RGB array.

Every adapter and the CLI read images through :func:`load_image`, so that a JPEG from a phone,
a 16-bit multi-channel microscopy TIFF and a float array from napari all reach the model the
same way. Conventions of the result (:class:`LoadedImage`):

* ``rgb`` is (H, W, 3), ``uint8``, C-contiguous and read-only; H is rows (y), W is columns (x).
  It is at the original resolution (never resized here; see :mod:`ovsam_core.preprocess`).
* Orientation is the *visual* one: the EXIF / TIFF orientation tag is applied.
* ``digest`` is a content key (sha256 over the shape and the RGB bytes), equal for two images
  whose pixels are equal whatever file or format they came from; use it to cache embeddings.

What happens to the pixels (in this order):

1. **Decoding.** Paths and bytes are sniffed: TIFF goes to ``tifffile`` when it is installed
   (16-bit, 32-bit, float, multi-page and multi-channel stacks, read as stored), falling back to
   Pillow for what ``tifffile`` does not handle (palette, CMYK, YCbCr, white-is-zero, JPEG or
   other codecs it cannot decode without ``imagecodecs``). Everything else goes to Pillow
   (JPEG, PNG, BMP, WebP, GIF, ...; only the first frame of an animation). Pillow's
   decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) applies to TIFFs read with
   ``tifffile`` too; set it to ``None`` to lift it.
2. **Modes.** RGB is kept. RGBA / RGBX / LA / PA: the alpha (or padding) channel is *dropped*,
   the colour channels are kept as stored (no compositing onto a background). Palette (P)
   images are expanded to their colours; CMYK, YCbCr, LAB and HSV are converted to RGB by
   Pillow; mode ``1`` (bilevel) gives 0/255; L, I;16, I and F are grey (one channel).
3. **Channels.** The decoded array is seen as (H, W, C): see :func:`load_image` for the
   channel axis and for ``channels``. C = 1 is grey (replicated to R, G, B); C = 2 is shown as
   (R, G, B) = (c0, c1, 0); C = 3 is RGB; C = 4 is RGBA with the alpha dropped, unless the
   image is a channel stack (then, like C > 4, you must pick channels).
4. **Intensities.** ``uint8`` passes through unchanged. ``bool`` gives 0 / 255. Every other
   dtype (uint16, int32, float32, ...) is rescaled to 0..255 *per channel*: the ``percentiles``
   ``(low, high)`` of the channel's finite pixels map to 0 and 255, values outside are
   clipped, and the result is rounded. NaN and +-inf pixels are ignored when computing the
   percentiles and become 0. If the two percentiles coincide (e.g. a sparse fluorescence image
   that is mostly background) the channel's finite min and max are used instead; a constant
   channel (or one with no finite pixel) becomes all zeros. ``percentiles=None`` uses the min
   and max directly. Per-channel rescaling changes the colour balance of 16-bit / float RGB
   photographs; convert those to ``uint8`` yourself if the colours matter.

Every failure is an :class:`ImageError` (a ``ValueError``) whose message is one line naming
the problem and the fix, fit to be shown as is by the CLI or a GUI.
"""
from __future__ import annotations

import hashlib
import io
import operator
import os
from dataclasses import dataclass, field
from typing import Any, BinaryIO, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageError", "LoadedImage", "ImageSource", "load_image", "image_digest"]

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Image.Image, np.ndarray]
"""What :func:`load_image` accepts (NumPy arrays also stand for anything with ``__array__``)."""

#: file suffixes of the formats :func:`load_image` reads, for finding the images of a folder
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_SHAPES = "expected (H, W), (H, W, C) or (C, H, W)"
_MAX_GUESSED_CHANNELS = 16

# tifffile's axis letters: Y, X are the image plane, S the samples of a pixel, Q "unknown".
_TIFF_PLANE_AXES = frozenset("YX")

# TIFF / EXIF orientation -> numpy operation on the (H, W, ...) array, mirroring Pillow's
# ImageOps.exif_transpose (used for TIFFs read with tifffile).
_ORIENT_OPS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


class ImageError(ValueError):
    """An image that cannot be loaded, with a one-line message saying what is wrong and the fix.

    Line breaks in the message (e.g. from a file name or a decoder's error) are folded into
    spaces so that the message is always a single line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).splitlines()))


def image_digest(rgb: np.ndarray) -> str:
    """sha256 hex digest of an (H, W, 3) uint8 image: over its shape, then its C-order bytes.

    Two images with equal pixels have equal digests, whichever file or format they came from;
    the shape is hashed too so that a 2x6 and a 3x4 image with the same bytes differ.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        raise ImageError(f"image_digest needs an (H, W, 3) uint8 array, got shape {shape} dtype {dtype}")
    h = hashlib.sha256()
    h.update(b"ovsam-rgb8:%dx%dx3:" % (rgb.shape[0], rgb.shape[1]))
    h.update(np.ascontiguousarray(rgb).data)
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded image, ready for :func:`ovsam_core.preprocess.resize_pil` and the model.

    Attributes:
        rgb: (H, W, 3) uint8, C-contiguous, read-only; visual orientation, original resolution.
        source: the file path the image was read from (as given), or ``None`` for bytes,
            PIL images and arrays.
        original_shape: shape of the pixel array as decoded or given, before orientation,
            channel selection and rescaling, e.g. ``(H, W)`` for grey, ``(H, W, 4)`` for RGBA
            or CMYK, ``(C, H, W)`` for a channel stack.
        original_dtype: NumPy name of that array's dtype (``"uint8"``, ``"uint16"``,
            ``"float32"``, ``"bool"``, ...), byte order left out.
        digest: :func:`image_digest` of ``rgb``; computed when left empty.

    Equality and hashing go by ``digest`` and the metadata above; ``rgb`` is not compared
    element-wise.
    """

    rgb: np.ndarray = field(repr=False)
    source: Optional[str] = None
    original_shape: Tuple[int, ...] = ()
    original_dtype: str = "uint8"
    digest: str = ""

    def __post_init__(self) -> None:
        rgb = self.rgb
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ImageError(
                f"LoadedImage.rgb must be an (H, W, 3) uint8 array, got shape "
                f"{getattr(rgb, 'shape', None)} dtype {getattr(rgb, 'dtype', type(rgb).__name__)}"
            )
        if not rgb.flags.c_contiguous:
            rgb = np.ascontiguousarray(rgb)
            object.__setattr__(self, "rgb", rgb)
        rgb.setflags(write=False)
        if not self.original_shape:
            object.__setattr__(self, "original_shape", tuple(rgb.shape))
        else:
            object.__setattr__(self, "original_shape", tuple(int(s) for s in self.original_shape))
        if not self.digest:
            object.__setattr__(self, "digest", image_digest(rgb))

    @property
    def height(self) -> int:
        """Rows of ``rgb`` (H)."""
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        """Columns of ``rgb`` (W)."""
        return int(self.rgb.shape[1])

    def to_pil(self) -> Image.Image:
        """``rgb`` as a PIL RGB image (a copy)."""
        return Image.fromarray(np.array(self.rgb))

    def _key(self) -> Tuple[Any, ...]:
        return (self.digest, self.source, self.original_shape, self.original_dtype)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LoadedImage):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"LoadedImage(source={self.source!r}, shape={tuple(self.rgb.shape)}, "
            f"original_shape={self.original_shape}, original_dtype={self.original_dtype!r}, "
            f"digest={self.digest[:12]!r}...)"
        )


# --------------------------------------------------------------------------------------------
# public entry point


def load_image(
    source: ImageSource,
    *,
    channels: Optional[Union[int, Sequence[int]]] = None,
    percentiles: Optional[Tuple[float, float]] = (1.0, 99.8),
    channel_axis: Optional[int] = None,
) -> LoadedImage:
    """Load an image from a path, bytes, a PIL image or an array as (H, W, 3) uint8 RGB.

    Args:
        source: a file path (``str`` / ``os.PathLike``), the encoded bytes of a file, a
            ``PIL.Image.Image`` (its EXIF orientation is applied, like for files), or an array
            (anything NumPy can view through ``__array__``) of shape (H, W), (H, W, C) or
            (C, H, W); leading axes of size 1 are dropped (e.g. a (1, C, H, W) batch of one).
            Arrays are taken as they are: no orientation tag, no alpha semantics beyond C = 4.
        channels: which channels to show, as indices into the channel axis (0-based): one
            index -> grey, two -> (R, G, B) = (c0, c1, 0), three -> (R, G, B). Repeats are
            allowed; an ``int`` means ``[int]``. ``None`` shows grey / RGB as stored, and
            raises :class:`ImageError` for more than 3 channels (4 for RGBA images), telling
            you to pick some (``channels=[0]``, CLI ``--channels 0``).
        percentiles: ``(low, high)`` percentiles, 0 <= low < high <= 100, of each channel's
            finite values that map to 0 and 255 for every dtype but ``uint8`` and ``bool``;
            ``None`` maps min and max. See the module docstring for the exact rules.
        channel_axis: the axis of a 3-D array (or of the stack read from a TIFF with
            ``tifffile``) that holds the channels; it marks the image as a channel stack, so
            4 channels need ``channels`` too. Ignored for other files, whose layout is known.
            ``None`` guesses: the TIFF's axes metadata when it names them; else the last axis
            if it has 1, 3 or 4 entries (the (H, W, C) layout of PIL, OpenCV, imageio); else
            the smallest axis if it is the first or the last and has at most 16 entries
            (ties: the last). Other 3-D shapes raise :class:`ImageError` asking for it.

    Returns:
        :class:`LoadedImage` with ``rgb`` (H, W, 3) uint8 read-only.

    Raises:
        ImageError: missing file, directory, empty or unreadable file, unsupported shape or
            dtype, zero-size array, bad ``channels`` / ``channel_axis`` / ``percentiles``.
    """
    pct = _check_percentiles(percentiles)
    chans = _check_channels(channels)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        decoded = _decode_path(path)
        label: Optional[str] = path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError("cannot read image <bytes>: the data is empty (0 bytes)")
        decoded = _decode_bytes(data, "<bytes>")
        label = None
    elif isinstance(source, Image.Image):
        decoded = _decode_pil(source, "<PIL image>", exif=True)
        label = None
    else:
        decoded = _Decoded(_as_array(source))
        label = None

    arr = decoded.array
    if decoded.stored is not None:
        original_shape, original_dtype = decoded.stored
    else:
        original_shape, original_dtype = tuple(int(s) for s in arr.shape), arr.dtype.name
    _check_dtype(arr)
    if arr.size == 0:
        raise ImageError(
            f"empty image of shape {original_shape}: height, width and channels must be at least 1"
        )
    hwc, explicit = _to_hwc(arr, decoded, channel_axis)
    rgb = _compose_rgb(hwc, chans, pct, explicit)
    if decoded.orientation in _ORIENT_OPS:
        rgb = _ORIENT_OPS[decoded.orientation](rgb)
    if rgb.base is not None or not rgb.flags.c_contiguous:
        # never hand out a view of the caller's array: the result is read-only and hashed
        rgb = np.array(rgb, dtype=np.uint8, order="C", copy=True)
    return LoadedImage(
        rgb=rgb, source=label, original_shape=original_shape, original_dtype=original_dtype
    )


# --------------------------------------------------------------------------------------------
# argument checks


def _check_percentiles(percentiles: Optional[Sequence[float]]) -> Optional[Tuple[float, float]]:
    if percentiles is None:
        return None
    try:
        low, high = (float(p) for p in percentiles)
    except (TypeError, ValueError):
        raise ImageError(
            f"percentiles must be two numbers (low, high) or None, got {percentiles!r}"
        ) from None
    if not (0.0 <= low < high <= 100.0):
        raise ImageError(
            f"percentiles must satisfy 0 <= low < high <= 100, got ({low:g}, {high:g}); "
            "e.g. (1, 99.8), or None for min-max"
        )
    return low, high


def _check_channels(channels: Optional[Union[int, Sequence[int]]]) -> Optional[List[int]]:
    if channels is None:
        return None
    items = [channels] if not isinstance(channels, (list, tuple, np.ndarray, range)) else list(channels)
    try:
        idx = [operator.index(c) for c in items]
    except TypeError:
        raise ImageError(
            f"channels must be channel indices such as [0] or [0, 2, 1], got {channels!r}"
        ) from None
    if not 1 <= len(idx) <= 3:
        raise ImageError(
            f"channels must list 1 to 3 channel indices (grey, two-colour or RGB), got {len(idx)}"
        )
    for c in idx:
        if c < 0:
            raise ImageError(f"channel index {c} is negative: channels are numbered from 0")
    return idx


def _check_dtype(arr: np.ndarray) -> None:
    if arr.dtype.kind not in "buif":
        raise ImageError(
            f"unsupported image dtype {arr.dtype}: expected bool, integer or float pixels"
        )


# --------------------------------------------------------------------------------------------
# decoding


@dataclass
class _Decoded:
    """A decoded pixel array and what its container said about its layout."""

    array: np.ndarray
    channel_axis: Optional[int] = None  # known channel axis of a 3-D array; None: guess
    explicit: bool = False  # a channel stack: 4 channels are not RGBA, pick channels
    user_axis: bool = True  # whether load_image's channel_axis applies (arrays, tifffile)
    orientation: int = 1  # EXIF/TIFF orientation still to apply (tifffile only)
    stored: Optional[Tuple[Tuple[int, ...], str]] = None  # (shape, dtype) before mode conversion


def _as_array(source: Any) -> np.ndarray:
    if isinstance(source, np.ndarray):
        return source
    if not hasattr(source, "__array__"):
        raise ImageError(
            f"unsupported image source of type {type(source).__name__}: expected a file path, "
            "bytes, a PIL image or a numpy array"
        )
    try:
        return np.asarray(source)
    except Exception as e:  # a foreign array type (torch on GPU, ...) that NumPy cannot view
        raise ImageError(
            f"cannot convert {type(source).__name__} to a numpy array ({_one_line(e)}); "
            "pass a numpy array (e.g. tensor.cpu().numpy())"
        ) from None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _decode_path(path: str) -> _Decoded:
    shown = f"cannot read image '{path}'"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        where = "" if os.path.isabs(path) else f" (looked for {os.path.abspath(path)})"
        raise ImageError(f"{shown}: no such file{where}") from None
    except PermissionError:
        raise ImageError(f"{shown}: permission denied") from None
    except OSError as e:
        raise ImageError(f"{shown}: {_one_line(e)}") from None
    if os.path.isdir(path):
        raise ImageError(f"{shown}: it is a directory; give the path of an image file in it")
    if st.st_size == 0:
        raise ImageError(f"{shown}: file is empty (0 bytes)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(32)
    except PermissionError:
        raise ImageError(f"{shown}: permission denied") from None
    except OSError as e:
        raise ImageError(f"{shown}: {_one_line(e)}") from None
    _check_declared_size(head, shown)
    head = head[:4]
    if head in _TIFF_MAGIC:
        try:
            with open(path, "rb") as fh:
                decoded = _decode_tiff(fh, shown)
        except OSError as e:
            raise ImageError(f"{shown}: {_one_line(e)}") from None
        if decoded is not None:
            return decoded
    return _open_with_pil(lambda: Image.open(path), shown, is_tiff=head in _TIFF_MAGIC)


def _decode_bytes(data: bytes, name: str) -> _Decoded:
    shown = f"cannot read image {name}"
    _check_declared_size(data[:32], shown)
    is_tiff = data[:4] in _TIFF_MAGIC
    if is_tiff:
        decoded = _decode_tiff(io.BytesIO(data), shown)
        if decoded is not None:
            return decoded
    return _open_with_pil(lambda: Image.open(io.BytesIO(data)), shown, is_tiff=is_tiff)


def _tifffile() -> Any:
    """The ``tifffile`` module, or ``None`` when it is not installed."""
    try:
        import tifffile
    except ImportError:
        return None
    return tifffile


def _decode_tiff(fh: BinaryIO, shown: str) -> Optional[_Decoded]:
    """Read a TIFF with tifffile; ``None`` means "let Pillow try" (absent, or not our kind)."""
    tifffile = _tifffile()
    if tifffile is None:
        return None
    try:
        with tifffile.TiffFile(fh) as tif:
            series = tif.series[0]
            page = series.keyframe
            photometric = int(page.photometric)
            if page.bitspersample == 1 and photometric != 0:
                return None
            # 1 MINISBLACK, 2 RGB; 0 MINISWHITE only for tifffile's own bool masks.
            if photometric not in (1, 2) and not (photometric == 0 and page.bitspersample == 1):
                return None
            shape = tuple(int(s) for s in series.shape)
            axes = str(series.axes)
            _check_pixel_limit(shape, axes, shown)
            arr = series.asarray()
            orientation_tag = page.tags.get(274)
            orientation = int(orientation_tag.value) if orientation_tag is not None else 1
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"{shown}: not enough memory to decode it") from None
    except Exception:  # anything tifffile cannot do (codecs, odd layouts): Pillow may
        return None
    arr = np.asarray(arr)
    if len(axes) != arr.ndim:
        axes = "Q" * arr.ndim
    # drop singleton axes other than the image plane (a time series of one, ...)
    keep = [i for i, (a, s) in enumerate(zip(axes, arr.shape)) if s != 1 or a in _TIFF_PLANE_AXES]
    if len(keep) < arr.ndim and len(keep) >= 2:
        arr = arr.reshape([arr.shape[i] for i in keep])
        axes = "".join(axes[i] for i in keep)
    extra = [i for i, a in enumerate(axes) if a not in _TIFF_PLANE_AXES]
    plane_ok = set(_TIFF_PLANE_AXES) <= set(axes)
    if arr.ndim == 3 and plane_ok and len(extra) == 1 and axes[extra[0]] != "Q":
        ax = extra[0]
        # 'S' samples of an RGB(A) pixel are colour; named stacks (C, Z, T, I, S of a
        # min-is-black image) are channels to pick from
        explicit = not (axes[ax] == "S" and photometric == 2)
        return _Decoded(arr, channel_axis=ax, explicit=explicit, orientation=orientation)
    if arr.ndim > 3 and plane_ok:
        raise ImageError(
            f"{shown}: a {arr.ndim}-D TIFF stack (axes {axes}, shape {tuple(arr.shape)}) is not one "
            "image; save or pass a single plane with its channels (e.g. tifffile.imread(path)[0])"
        )
    return _Decoded(arr, orientation=orientation)


def _check_pixel_limit(shape: Tuple[int, ...], axes: str, shown: str) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    if not limit:
        return
    if "Y" in axes and "X" in axes and len(axes) == len(shape):
        pixels = shape[axes.index("Y")] * shape[axes.index("X")]
    else:  # unknown layout: the two largest axes are the image plane
        pixels = int(np.prod(sorted(shape)[-2:], dtype=np.float64))
    if pixels > 2 * limit:
        raise ImageError(
            f"{shown}: image too large ({pixels} pixels, more than twice PIL.Image.MAX_IMAGE_PIXELS "
            f"= {limit}); set PIL.Image.MAX_IMAGE_PIXELS = None if you trust the file"
        )


def _declared_size(head: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) a PNG or BMP header declares (Pillow refuses a zero size before saying
    which), else None."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:2] == b"BM" and len(head) >= 26:
        dib = int.from_bytes(head[14:18], "little")
        if dib == 12:  # BITMAPCOREHEADER: 16-bit sizes
            return int.from_bytes(head[18:20], "little"), int.from_bytes(head[20:22], "little")
        if dib >= 40:
            return (abs(int.from_bytes(head[18:22], "little", signed=True)),
                    abs(int.from_bytes(head[22:26], "little", signed=True)))
    return None


def _check_declared_size(head: bytes, shown: str) -> None:
    size = _declared_size(head)
    if size is not None and 0 in size:
        raise ImageError(f"{shown}: empty image: its header declares width {size[0]} and height {size[1]}")


def _open_with_pil(opener: Any, shown: str, *, is_tiff: bool) -> _Decoded:
    hint = ""
    if is_tiff and _tifffile() is None:
        hint = " (for 16-bit/float/multi-channel TIFFs install tifffile: pip install tifffile)"
    try:
        with opener() as im:
            return _decode_pil(im, shown, exif=True, stack_pages=is_tiff, hint=hint)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            f"{shown}: not a recognised image format (JPEG, PNG, TIFF, BMP, WebP, ...){hint}"
        ) from None
    except Image.DecompressionBombError as e:
        raise ImageError(
            f"{shown}: image too large ({_one_line(e)}); set PIL.Image.MAX_IMAGE_PIXELS = None "
            "if you trust the file"
        ) from None
    except MemoryError:
        raise ImageError(f"{shown}: not enough memory to decode it") from None
    except Exception as e:  # truncated or corrupt data: Pillow raises OSError, SyntaxError, ...
        raise ImageError(f"{shown}: the file is truncated or corrupt ({_one_line(e)}){hint}") from None


def _decode_pil(
    im: Image.Image, shown: str, *, exif: bool, stack_pages: bool = False, hint: str = ""
) -> _Decoded:
    """A PIL image -> (H, W) or (H, W, C) array in a mode NumPy understands."""
    try:
        n_frames = int(getattr(im, "n_frames", 1) or 1)
        if stack_pages and n_frames > 1:
            pages = _pil_pages(im, n_frames)
            if pages is not None:
                return _Decoded(np.stack(pages), channel_axis=0, explicit=True, user_axis=False)
        if getattr(im, "is_animated", False) or n_frames > 1:
            im.seek(0)
        im.load()
        probe = np.asarray(im.crop((0, 0, 1, 1)))  # dtype and bands of the stored mode
        stored = ((im.height, im.width) + tuple(probe.shape[2:]), probe.dtype.name)
        if exif:
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # a malformed EXIF block must not stop the image from loading
                pass
        pixels = _pil_pixels(im, shown, hint)
        return _Decoded(pixels, channel_axis=-1, user_axis=False, stored=stored)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise
    except MemoryError:
        raise
    except Exception as e:
        raise ImageError(f"{shown}: the file is truncated or corrupt ({_one_line(e)}){hint}") from None


def _pil_pages(im: Image.Image, n_frames: int) -> Optional[List[np.ndarray]]:
    """Pages of a multi-page grey TIFF (Pillow fallback) as channels; None if they differ."""
    pages: List[np.ndarray] = []
    for i in range(n_frames):
        im.seek(i)
        im.load()
        if im.mode not in ("1", "L", "I", "F") and not im.mode.startswith("I;16"):
            return None
        a = np.asarray(im)
        if pages and (a.shape != pages[0].shape or a.dtype != pages[0].dtype):
            return None
        pages.append(a)
    im.seek(0)
    return pages


def _pil_pixels(im: Image.Image, shown: str, hint: str) -> np.ndarray:
    mode = im.mode
    if mode in ("1", "L", "RGB", "I", "F") or mode.startswith("I;16"):
        return np.asarray(im)
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel(0))  # alpha dropped
    if mode in ("RGBA", "RGBX", "RGBa"):
        return np.asarray(im)[..., :3]  # alpha / padding dropped
    if mode in ("P", "PA"):
        return np.asarray(im.convert("RGBA"))[..., :3]  # palette colours, alpha dropped
    try:
        return np.asarray(im.convert("RGB"))  # CMYK, YCbCr, LAB, HSV, ...
    except Exception as e:
        raise ImageError(
            f"{shown}: cannot convert its {mode} pixels to RGB ({_one_line(e)}); "
            f"convert the file to RGB first{hint}"
        ) from None


# --------------------------------------------------------------------------------------------
# layout: everything -> (H, W, C)


def _to_hwc(arr: np.ndarray, decoded: _Decoded, channel_axis: Optional[int]) -> Tuple[np.ndarray, bool]:
    """(H, W), (H, W, C) or (C, H, W) -> (H, W, C) view; and whether it is a channel stack."""
    shape = tuple(arr.shape)
    if not decoded.user_axis:
        channel_axis = None  # PIL-decoded: the mode fixes the layout
    if channel_axis is None and arr.ndim == 3 and decoded.channel_axis is not None:
        return np.moveaxis(arr, decoded.channel_axis, -1), decoded.explicit
    user_axis = channel_axis
    if channel_axis is not None:
        try:
            channel_axis = operator.index(channel_axis)
        except TypeError:
            raise ImageError(f"channel_axis must be an integer axis or None, got {user_axis!r}") from None
    # drop leading axes of size 1: (1, C, H, W) batches, (1, 1, H, W) ...
    lead = 0
    while arr.ndim - lead > 3 and shape[lead] == 1:
        lead += 1
    if lead:
        arr = arr.reshape(shape[lead:])
        if channel_axis is not None and channel_axis >= 0:
            if channel_axis < lead:
                raise ImageError(
                    f"channel_axis={channel_axis} points at an axis of size 1 in shape {shape}; "
                    "give the axis that holds the channels"
                )
            channel_axis -= lead
    if arr.ndim not in (2, 3):
        raise ImageError(f"unsupported image shape {shape}: {_SHAPES}")
    if arr.ndim == 2:
        if channel_axis is not None:
            raise ImageError(
                f"channel_axis={user_axis} given but the image of shape {shape} is 2-D (H, W) "
                "with no channel axis; leave channel_axis unset"
            )
        return arr[..., None], False
    if channel_axis is not None:
        if not -3 <= channel_axis <= 2:
            raise ImageError(
                f"channel_axis={user_axis} is out of range for an image of shape {shape}: "
                "use 0 (C, H, W), -1 (H, W, C) or 1"
            )
        return np.moveaxis(arr, channel_axis, -1), True
    axis = _guess_channel_axis(arr.shape)
    if axis is None:
        raise ImageError(
            f"cannot tell which axis of the image of shape {shape} holds the channels: "
            "pass channel_axis=0 for (C, H, W) or channel_axis=-1 for (H, W, C)"
        )
    return np.moveaxis(arr, axis, -1), decoded.explicit


def _guess_channel_axis(shape: Tuple[int, ...]) -> Optional[int]:
    """Channel axis of a 3-D shape, or None when it is ambiguous (see :func:`load_image`)."""
    if shape[2] in (1, 3, 4):
        return 2
    smallest = min(shape)
    if smallest > _MAX_GUESSED_CHANNELS:
        return None
    if shape[2] == smallest:
        return 2
    if shape[0] == smallest:
        return 0
    return None


# --------------------------------------------------------------------------------------------
# channels and intensities


def _compose_rgb(
    hwc: np.ndarray,
    channels: Optional[List[int]],
    percentiles: Optional[Tuple[float, float]],
    explicit: bool,
) -> np.ndarray:
    """(H, W, C) any dtype -> (H, W, 3) uint8 following the channel and intensity rules."""
    n = hwc.shape[2]
    if channels is None:
        if n in (1, 2, 3) or (n == 4 and not explicit):
            channels = list(range(min(n, 3)))
        else:
            raise ImageError(
                f"the image has {n} channels: pick up to three to show, e.g. channels=[0] (grey) or "
                "channels=[0, 1, 2] (RGB) (CLI: --channels 0 or --channels 0,1,2)"
            )
    for c in channels:
        if c >= n:
            raise ImageError(
                f"channel {c} is out of range: the image has {n} channel{'s' if n != 1 else ''} "
                f"(valid indices 0..{n - 1})"
            )
    h, w = hwc.shape[:2]
    planes = [_to_uint8(hwc[..., c], percentiles) for c in channels]
    if len(planes) == 1:
        planes = planes * 3
    elif len(planes) == 2:
        planes.append(np.zeros((h, w), np.uint8))
    return np.stack(planes, axis=-1)


def _to_uint8(plane: np.ndarray, percentiles: Optional[Tuple[float, float]]) -> np.ndarray:
    """One (H, W) channel -> uint8: pass-through, 0/255 for bool, percentile rescaling else."""
    kind = plane.dtype.kind
    if plane.dtype == np.uint8:
        return plane
    if kind == "b":
        return plane.astype(np.uint8) * np.uint8(255)
    x = plane.astype(np.float64)  # native byte order, a copy we may modify
    finite = np.isfinite(x) if kind == "f" else None
    values = x if finite is None or finite.all() else x[finite]
    out = np.zeros(x.shape, np.uint8)
    if values.size == 0:
        return out
    lo_v, hi_v = float(values.min()), float(values.max())
    if not hi_v > lo_v:
        return out  # constant channel
    if finite is not None:
        x[~finite] = lo_v  # ignored, zeroed below; keeps the arithmetic free of NaN/inf
    # rescaling is scale-invariant: bring huge float64 values into a range where the
    # differences and the percentile interpolation cannot overflow
    if max(abs(lo_v), abs(hi_v)) > 1e300:
        x *= 0.125
        values = values * 0.125 if values is not x else x
        lo_v, hi_v = lo_v * 0.125, hi_v * 0.125
    lo, hi = lo_v, hi_v
    if percentiles is not None:
        p_lo, p_hi = (float(v) for v in np.percentile(values, percentiles))
        if p_hi > p_lo:
            lo, hi = p_lo, p_hi
    with np.errstate(over="ignore", under="ignore"):  # +-inf beyond the range clips to 0 / 255
        x -= lo
        x /= hi - lo  # > 0 even for subnormal differences (IEEE gradual underflow)
        x *= 255.0
    np.clip(x, 0.0, 255.0, out=x)
    np.rint(x, out=x)
    out[...] = x
    if finite is not None:
        out[~finite] = 0
    return out
