"""int8 calibration sets for the OpenVINO encoder: which images, preprocessed how, keyed how.

By default: natural photographs bundled with scikit-image (:data:`CALIBRATION_IMAGES`: a
portrait, a coffee cup, a cat, a rocket on its pad, a street scene with a motorcycle), each
preprocessed exactly as :class:`~ovsam_core.Predictor` does. Recalibrate on images like yours
(e.g. microscopy) by pointing ``OVSAM_CALIBRATION_IMAGES`` (:data:`CALIBRATION_ENV`) at a folder
of them (10-50 images are plenty), or in Python with :func:`calibration_inputs` +
``OpenVINOEncoder(..., calibration=...)``. The set's digest is part of the cache key, so a new
set makes a new model.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import List, Sequence

import torch

#: scikit-image's bundled natural photographs used to calibrate int8 by default.
CALIBRATION_IMAGES = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png")
#: A folder of your own images to calibrate int8 on (a new set makes a new cache entry).
CALIBRATION_ENV = "OVSAM_CALIBRATION_IMAGES"


class OpenVINOUnavailable(RuntimeError):
    """OpenVINO (or NNCF / scikit-image for int8) is not installed."""


def default_calibration_images() -> List[Path]:
    """The int8 calibration image files: those in the folder ``$OVSAM_CALIBRATION_IMAGES`` when
    set, else the photographs bundled with scikit-image."""
    folder = os.environ.get(CALIBRATION_ENV)
    if folder:
        exts = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}
        paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in exts)
        if not paths:
            raise ValueError(f"{CALIBRATION_ENV}={folder} holds no images (jpg, png, tif, bmp, webp)")
        return paths
    try:
        import skimage.data as skdata
    except ImportError as e:  # pragma: no cover - part of the openvino extra
        raise OpenVINOUnavailable("int8 calibration needs scikit-image: pip install 'ovsam[openvino]'") from e
    root = Path(skdata.__file__).parent
    out = [root / n for n in CALIBRATION_IMAGES if (root / n).is_file()]
    if not out:
        raise OpenVINOUnavailable(f"none of scikit-image's calibration photographs were found in {root}")
    return out


def calibration_inputs(images: Sequence, image_size: int) -> List[torch.Tensor]:
    """Preprocess images (paths, arrays, PIL images) exactly as the Predictor does: (1, 3, S, S)."""
    from PIL import Image

    from ..images import load_image
    from ..preprocess import normalize_and_pad, resize_pil

    xs = []
    for im in images:
        rgb = load_image(im).rgb
        xs.append(normalize_and_pad(resize_pil(Image.fromarray(rgb), image_size), image_size))
    return xs


def files_digest(paths: Sequence[Path]) -> str:
    """Key of a calibration set given as files (names and sizes)."""
    items = [[p.name, p.stat().st_size] for p in paths]
    return "files:" + hashlib.sha256(json.dumps(items).encode()).hexdigest()[:12]


def tensors_digest(xs: Sequence[torch.Tensor]) -> str:
    """Key of a calibration set given as tensors (their bytes)."""
    h = hashlib.sha256()
    for x in xs:
        h.update(x.numpy().tobytes())
    return h.hexdigest()[:12]
