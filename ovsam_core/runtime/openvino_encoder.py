"""The image encoder (CLIP trunk + SAM2CLIP neck + FPN) compiled by OpenVINO, fp32 or int8.

Optional: ``pip install "ovsam[openvino]"``. The graph is converted from the loaded PyTorch
model once, quantised for ``int8`` with NNCF post-training quantisation, saved as OpenVINO IR
in the cache folder under a key of the model signature (model, weights, architecture,
precision, calibration set, ovsam and OpenVINO versions), and compiled from there (OpenVINO's
own compiled-blob cache makes later starts fast). The PyTorch trunk and neck are then never
run, so their memory-mapped weights are never read.

One-off costs (real-size RN50x16 encoder, 2-core CPU): converting to the fp32 IR takes 3-7 min
and ~4.5 GB; int8 calibration needs more than 10 GB (NNCF collects every activation of a
1024² image), so ``ov-int8`` is opt-in. Later starts compile from the cache in seconds.

int8 calibration: by default the five natural photographs bundled with scikit-image (a
portrait, a coffee cup, a cat, a rocket on its pad, a street scene with a motorcycle; see
:data:`CALIBRATION_IMAGES`), each
preprocessed exactly as :class:`~ovsam_core.Predictor` does. Recalibrate on images like yours
(e.g. microscopy) by pointing ``OVSAM_CALIBRATION_IMAGES`` at a folder of them (10-50 images
are plenty), or in Python with :func:`calibration_inputs` + ``OpenVINOEncoder(...,
calibration=...)``; the set's digest is part of the cache key, so a new set makes a new model.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..modeling.ovsam import OVSAM, ImageFeatures
from .isa import cpu_info

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
#: scikit-image's bundled natural photographs used to calibrate int8 by default.
CALIBRATION_IMAGES = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png")
OUTPUTS = ("embedding", "p2", "p3", "p4", "p5", "c5")
#: A folder of your own images to calibrate int8 on (a new set makes a new cache entry).
CALIBRATION_ENV = "OVSAM_CALIBRATION_IMAGES"


class OpenVINOUnavailable(RuntimeError):
    """OpenVINO (or NNCF for int8) is not installed."""


def openvino_available(int8: bool = False) -> bool:
    """Whether ``openvino`` (and ``nncf`` when ``int8``) can be imported."""
    import importlib.util

    mods = ("openvino", "nncf") if int8 else ("openvino",)
    return all(importlib.util.find_spec(m) is not None for m in mods)


class _EncoderGraph(nn.Module):
    """(1, 3, S, S) normalised image -> embedding, P2..P5, C5 (the traced graph)."""

    def __init__(self, model: OVSAM) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        f = self.model.extract_features(x)
        return (f.embedding, *f.fpn, f.c5)


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


def _files_digest(paths: Sequence[Path]) -> str:
    items = [[p.name, p.stat().st_size] for p in paths]
    return "files:" + hashlib.sha256(json.dumps(items).encode()).hexdigest()[:12]


def _digest(xs: Sequence[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for x in xs:
        h.update(x.numpy().tobytes())
    return h.hexdigest()[:12]


class OpenVINOEncoder:
    """``extract_features`` of an :class:`OVSAM` model, run by OpenVINO's CPU plugin.

    Args:
        model: the loaded PyTorch model (read once, at the first conversion).
        signature: identifies the weights (e.g. ``LoadedModel.weights_id``); part of the cache key.
        precision: ``fp32`` (OpenVINO kernels, fp32 arithmetic) or ``int8`` (NNCF PTQ).
        cache_dir: where the IR and compiled blobs live (default ``<ovsam cache>/openvino``).
        calibration: int8 only: (1, 3, S, S) inputs (:func:`calibration_inputs`); default the
            bundled photographs.
        threads: inference threads (default: torch's thread count).
        notify: called with a one-line message before a (slow, one-off) conversion or calibration.
    """

    def __init__(self, model: OVSAM, signature: str, precision: str = "fp32", *,
                 cache_dir: Optional[Path] = None, calibration: Optional[Sequence[torch.Tensor]] = None,
                 threads: Optional[int] = None, notify: Optional[Callable[[str], None]] = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown OpenVINO precision {precision!r}; choose fp32 or int8")
        if not openvino_available(int8=precision == "int8"):
            what = "openvino and nncf" if precision == "int8" else "openvino"
            raise OpenVINOUnavailable(f"{what} not installed: pip install 'ovsam[openvino]', "
                                      "or use --dtype fp32")
        import openvino as ov

        self.precision = precision
        self.image_size = model.cfg.image_size
        size = self.image_size
        calib = list(calibration) if calibration is not None else None
        calib_files: List[Path] = []
        calib_id = ""
        if precision == "int8":
            if calib is None:  # keyed by the files; read only if a quantisation is needed
                calib_files = default_calibration_images()
                calib_id = _files_digest(calib_files)
            else:
                calib_id = _digest(calib)
        from .. import __version__

        def key(*extra) -> str:
            src = json.dumps([signature, model.cfg.to_dict(), __version__, ov.__version__, *extra],
                             sort_keys=True, default=str)
            return hashlib.sha256(src.encode()).hexdigest()[:16]

        root = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
        self.key = key(precision, calib_id)
        self.dir = root / self.key
        xml = self.dir / "encoder.xml"
        core = ov.Core()
        # compiled blobs depend on the ISA the plugin saw (emulation caps included)
        core.set_property({"CACHE_DIR": str(root / f"blobs-{cpu_info().key}")})
        if not xml.is_file():
            fp32_xml = root / key("fp32", "") / "encoder.xml"
            say = notify or (lambda msg: None)
            if not fp32_xml.is_file():  # the int8 model is quantised from the cached fp32 IR
                say(f"converting the image encoder to OpenVINO once (a few minutes; cached in {root})")
                self._save(self._convert(model), fp32_xml)
            if precision == "int8":
                say(f"calibrating the int8 encoder once (slow, >10 GB for real-size models; cached in {root})")
                if calib is None:
                    calib = calibration_inputs(calib_files, size)
                self._save(self._quantize(core.read_model(str(fp32_xml)), calib), xml)
        threads = threads or torch.get_num_threads()
        config = {"INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = core.compile_model(str(xml), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def _convert(self, model: OVSAM):
        import openvino as ov

        size = self.image_size
        log.info("converting the image encoder to OpenVINO (once; cached)")
        with torch.no_grad():
            ov_model = ov.convert_model(_EncoderGraph(model).eval(), example_input=torch.zeros(1, 3, size, size),
                                        input=[((1, 3, size, size), ov.Type.f32)])
        for out, name in zip(ov_model.outputs, OUTPUTS):
            out.get_tensor().set_names({name})
        return ov_model

    @staticmethod
    def _quantize(ov_model, calib: List[torch.Tensor]):
        import nncf

        log.info("quantising the image encoder to int8 on %d calibration images (once; cached)", len(calib))
        data = nncf.Dataset(calib, lambda x: x.numpy())
        return nncf.quantize(ov_model, data, subset_size=len(calib), model_type=nncf.ModelType.TRANSFORMER,
                             preset=nncf.QuantizationPreset.MIXED)

    @staticmethod
    def _save(ov_model, xml: Path) -> None:
        """Write the IR next to its final folder, then move it in place (atomic for readers)."""
        import shutil

        import openvino as ov

        tmp = xml.parent.with_name(xml.parent.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov_model, str(tmp / xml.name), compress_to_fp16=False)
        if xml.parent.exists():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, xml.parent)

    def __call__(self, x: torch.Tensor) -> ImageFeatures:
        """Encode a (1, 3, S, S) fp32 input; returns fp32 :class:`ImageFeatures` (as extract_features)."""
        res = self.request.infer({0: x.detach().cpu().float().contiguous().numpy()})
        outs = [torch.from_numpy(np.array(res[self.compiled.output(i)])) for i in range(len(OUTPUTS))]
        return ImageFeatures(embedding=outs[0], fpn=tuple(outs[1:5]), c5=outs[5])


def _default_cache_dir() -> Path:
    from ..weights.hub import cache_dir

    return Path(cache_dir()) / "openvino"
