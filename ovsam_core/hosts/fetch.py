"""Safe image input from untrusted sources: pixel and byte limits before decoding, data URLs,
paths confined to a root, public-address checks (the building blocks of a host's image fetcher).

A web service must refuse an image by its **header** before decoding it: a 2 kB PNG can claim
50,000 x 50,000 pixels. :func:`image_header_size` reads the size without decoding (and without
PIL's decompression-bomb check, whose advice "set MAX_IMAGE_PIXELS = None" is wrong for a
server), :func:`load_image_limited` checks it against the caller's limit, then decodes.
"""
from __future__ import annotations

import base64
import binascii
import io
import ipaddress
from pathlib import Path
from typing import Tuple
from urllib.parse import unquote

from ..images import ImageError, LoadedImage, load_image

#: Default pixel limit of services (100 M pixels, e.g. 10,000 x 10,000).
DEFAULT_MAX_PIXELS = 100_000_000


class ImageTooLargeError(ImageError):
    """An image over a pixel or byte limit (a service answers 413)."""


class UnsafeSourceError(ValueError):
    """A reference that must not be followed (path traversal, NUL bytes, ...)."""


def image_header_size(data: bytes) -> Tuple[int, int]:
    """(width, height) from the image header, nothing decoded; ImageError if no format reads it."""
    from PIL import Image, UnidentifiedImageError

    Image.init()
    fp = io.BytesIO(data)
    prefix = data[:16]
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        if accept is not None and not accept(prefix):
            continue
        fp.seek(0)
        try:
            im = factory(fp, "")  # the format's header parser; Image.open would add the bomb check
        except (SyntaxError, IndexError, TypeError, ValueError, OSError, UnidentifiedImageError, EOFError):
            continue
        return int(im.size[0]), int(im.size[1])
    raise ImageError("the data is not an image in a format Pillow reads (JPEG, PNG, TIFF, BMP, WebP, ...)")


def check_image_pixels(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Tuple[int, int]:
    """(width, height) of an encoded image; ImageTooLargeError when it has more than ``max_pixels``."""
    w, h = image_header_size(data)
    if w * h > max_pixels:
        raise ImageTooLargeError(f"image is {w}x{h} = {w * h} pixels, over the {max_pixels} pixel limit")
    return w, h


def load_image_limited(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = 1 << 30) -> LoadedImage:
    """Decode untrusted image bytes after checking their size and pixel count (see module doc)."""
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"image is {len(data)} bytes, over the {max_bytes} byte limit")
    try:
        check_image_pixels(data, max_pixels)
    except ImageTooLargeError:
        raise
    except ImageError:
        pass  # not readable by Pillow's header parsers: load_image says precisely why
    return load_image(data)


def decode_data_url(ref: str, max_bytes: int) -> bytes:
    """The bytes of a ``data:image/...;base64,...`` URL (ValueError otherwise, ImageTooLargeError if big)."""
    head, _, payload = ref.partition(",")
    if not head.startswith("data:image/") or not head.endswith(";base64"):
        raise ValueError("only base64 data:image/... URLs are supported")
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise ImageTooLargeError(f"image larger than {max_bytes} bytes")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the data: URL is not valid base64") from None


def safe_join(root: str, relative: str) -> Path:
    """``root/relative`` (URL-unquoted) resolved, symlinks too, and checked to stay inside ``root``."""
    rel = unquote(relative).replace("\\", "/")
    if "\x00" in rel:
        raise UnsafeSourceError("refused: NUL byte in the path")
    base = Path(root).resolve()
    target = (base / rel.lstrip("/")).resolve()
    if target != base and base not in target.parents:
        raise UnsafeSourceError(f"refused: {relative!r} leaves the document root")
    return target


def is_public_address(ip: str) -> bool:
    """False for loopback, private, link-local, reserved, multicast and unspecified addresses."""
    a = ipaddress.ip_address(ip)
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return not (a.is_private or a.is_loopback or a.is_link_local or a.is_reserved or a.is_multicast
                or a.is_unspecified)
