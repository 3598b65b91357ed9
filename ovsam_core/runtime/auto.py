"""``dtype="auto"``: the fastest image-encoder path that keeps the answers, for this machine.

Encoder precisions (the ``dtype`` of :class:`~ovsam_core.Predictor` and ``--dtype``):

=========== =============================================================================
``fp32``    PyTorch, fp32: the parity reference.
``bf16``    PyTorch, bf16 autocast + channels_last: fast only with AMX or AVX512-BF16
            (emulated, several times *slower* than fp32, on AVX2-only CPUs); GPUs.
``fp16``    PyTorch, fp16 autocast: GPUs only.
``ov-fp32`` OpenVINO CPU kernels in fp32 (``ovsam[openvino]``).
``ov-bf16`` OpenVINO, the SAM2CLIP neck in bf16 (trunk and FPN fp32): AVX512-BF16 / AMX CPUs only.
``ov-mixed`` OpenVINO, trunk and FPN fp32, the neck's matrix products int8 (int8 weights,
            activations quantised at run time, no calibration). With int8 dot products
            (AVX512-VNNI, AMX) the neck is an OpenVINO graph, the rest of it bf16 where bf16
            is native; elsewhere (AVX2) the neck runs in PyTorch's int8 layers, the rest fp32.
``ov-int8`` OpenVINO with NNCF int8 post-training quantisation of trunk and neck
            (``ovsam[openvino]``): AVX512-VNNI / AMX CPUs only (elsewhere its kernels saturate).
=========== =============================================================================

The trunk and the FPN stay fp32 on every CPU path that ``auto`` picks: their features name the
objects (the CLIP head reads them), and in bf16 they already reorder near-tied classes of a
top-5. The neck only shapes the masks, which tolerate its lower precision (mask IoU >= 0.98).

``auto`` picks, in order:

* CUDA: ``bf16`` where the GPU supports it, else ``fp16``; MPS: ``fp32``.
* CPU with int8 dot products (AVX512-VNNI or AMX), real-size model, OpenVINO and NNCF
  installed: ``ov-mixed`` (on a 2-core AMD Zen 4: see ``bench/README.md``; labels, top-5 and
  masks kept on the parity case: ``tests/test_runtime_accuracy.py``).
* CPU with AMX, without OpenVINO: ``bf16`` (native bf16 tiles; the trunk in bf16 may reorder
  near-tied classes, as on AVX512-BF16; AMX was not available to measure).
* CPU with AVX512-BF16, real-size model, OpenVINO installed (no NNCF): ``ov-bf16``.
* CPU without AVX512-BF16 (AVX2), real-size model, OpenVINO installed and PyTorch able to run
  int8 layers: ``ov-mixed`` with its neck in PyTorch (the trunk and FPN in OpenVINO fp32).
* CPU, real-size model, OpenVINO installed: ``ov-fp32`` (same answers as fp32, embedding
  rel. error ~1e-6, measured faster than PyTorch fp32; ``bench/ovsam_bench/encode_isa.py``).
  ``ov-int8`` is opt-in (``--dtype ov-int8``): it changes the features more (rel. error a
  few %), and its one-off NNCF calibration of the real-size encoder needs more than 10 GB of
  memory and tens of minutes on a 2-core machine (it collects every activation at 1024²).
* CPU with AVX512-BF16 but no AMX: ``bf16`` if a one-off micro-benchmark (cached per machine
  in the ovsam cache folder) finds it >= 1.3x faster than fp32, else ``fp32``.
* Otherwise ``fp32``.

Small models (the tiny test architectures, image size < 512) always use PyTorch fp32:
compiling them would cost more than it saves. Nothing here ever fails for a missing optional package: ``auto`` then uses the
best PyTorch path.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .isa import CpuInfo, cpu_info

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "ov-fp32", "ov-bf16", "ov-mixed", "ov-int8")
CHOICES = ("auto",) + PRECISIONS
#: Images at least this large (model frame) are worth an accelerated runtime.
ACCELERATE_MIN_IMAGE_SIZE = 512
BF16_MIN_SPEEDUP = 1.3


@dataclass(frozen=True)
class PrecisionChoice:
    """The resolved encoder precision and why it was chosen (shown by ``ovsam runtime``)."""

    name: str
    reason: str

    @property
    def backend(self) -> str:
        return "openvino" if self.name.startswith("ov-") else "torch"


def bf16_advice(info: Optional[CpuInfo] = None) -> str:
    """One line on whether bf16 pays off on this CPU (for error messages and docs)."""
    info = info or cpu_info()
    if info.amx:
        return "bf16 is fast on this CPU (AMX)"
    if info.avx512_bf16:
        return "this CPU has AVX512-BF16 but no AMX: bf16 may or may not beat fp32 (`ovsam runtime` measures it)"
    return (f"bf16 is emulated on this CPU ({info.isa}, no AMX or AVX512-BF16) and several times slower "
            "than fp32")


def validate_precision(name: str, device: torch.device) -> None:
    """Raise ``ValueError`` with machine-specific advice for an impossible request."""
    if name not in CHOICES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(CHOICES)}")
    if name == "fp16" and device.type == "cpu":
        best = resolve_precision("auto", device).name
        raise ValueError(f"fp16 needs a GPU; on this CPU use --dtype auto (picks {best} here) or fp32 "
                         f"({bf16_advice()})")
    if name.startswith("ov-") and device.type == "cpu":
        from .openvino_encoder import NEEDS  # the one table of what each OpenVINO precision needs

        flag, what = NEEDS.get(name[len("ov-"):], (None, ""))
        if flag and not getattr(cpu_info(), flag):
            raise ValueError(f"{name} needs {what}, which this CPU ({cpu_info().isa}) lacks; "
                             "use --dtype auto or ov-fp32")
    if name.startswith("ov-") and device.type != "cpu":
        raise ValueError(f"{name} runs the encoder with OpenVINO on the CPU; with --device {device.type} "
                         "use --dtype auto, bf16 or fp16")


def _cache_file() -> Path:
    from ..weights.hub import cache_dir

    return Path(cache_dir()) / "runtime" / "bf16-speedup.json"


def _time_workload(dtype: Optional[torch.dtype], repeats: int = 3) -> float:
    """Min time of a small encoder-like workload (convs + token MLP), fp32 or autocast ``dtype``."""
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(192, 192, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(192, 192, 3, padding=1)).eval()
    mlp = torch.nn.Sequential(torch.nn.Linear(640, 2560), torch.nn.GELU(), torch.nn.Linear(2560, 640)).eval()
    x = torch.randn(1, 192, 64, 64, generator=g)
    t = torch.randn(2048, 640, generator=g)
    if dtype is not None:
        conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    best = float("inf")
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        conv(x), mlp(t)  # warm-up (oneDNN primitive creation)
        for _ in range(repeats):
            s = time.perf_counter()
            conv(x), mlp(t)
            best = min(best, time.perf_counter() - s)
    return best


def bf16_speedup(refresh: bool = False) -> float:
    """fp32 time / bf16 time of a small workload on this CPU, measured once and cached.

    The cache is keyed by :attr:`CpuInfo.key` (CPU, caps, torch version, threads). Rounds
    alternate fp32 and bf16 and keep each one's minimum, to be robust to other load.
    """
    info = cpu_info()
    path = _cache_file()
    data = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
    if not refresh and info.key in data:
        return float(data[info.key]["speedup"])
    fp32 = min(_time_workload(None), _time_workload(None))
    bf16 = min(_time_workload(torch.bfloat16), _time_workload(torch.bfloat16))
    speedup = fp32 / bf16
    data[info.key] = {"speedup": speedup, "fp32_s": fp32, "bf16_s": bf16, "cpu": info.describe(),
                      "loadavg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except OSError:  # read-only cache: measure again next time
        pass
    return speedup


def resolve_precision(requested: str, device: torch.device, image_size: int = 1024) -> PrecisionChoice:
    """Resolve ``requested`` (``auto`` or an explicit precision) for ``device``.

    Explicit values are returned as they are (see :func:`validate_precision`); ``auto``
    follows the order in the module docstring.
    """
    if requested != "auto":
        return PrecisionChoice(requested, "requested")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16", "CUDA GPU with bf16")
        return PrecisionChoice("fp16", "CUDA GPU without bf16")
    if device.type != "cpu":
        return PrecisionChoice("fp32", f"{device.type} device")
    info = cpu_info()
    if image_size < ACCELERATE_MIN_IMAGE_SIZE:
        return PrecisionChoice("fp32", f"{info.describe()}: small model (the fp32 reference is fast enough)")
    from .openvino_encoder import mixed_neck_engine, openvino_available

    if info.vnni and openvino_available(int8=True):
        return PrecisionChoice("ov-mixed", f"{info.describe()}: OpenVINO installed, native int8 dot products "
                                           "for the neck (trunk and FPN fp32)")
    if info.amx:
        return PrecisionChoice("bf16", f"{info.describe()}: native bf16 (AMX)")
    if openvino_available():
        if info.avx512_bf16:
            return PrecisionChoice("ov-bf16", f"{info.describe()}: OpenVINO installed, native bf16 dot products")
        if info.capability.upper().startswith("AVX") and mixed_neck_engine(info) == "torch":
            return PrecisionChoice("ov-mixed", f"{info.describe()}: OpenVINO installed for the trunk and FPN "
                                               "(fp32), the neck's matrix products int8 in PyTorch")
        return PrecisionChoice("ov-fp32", f"{info.describe()}: OpenVINO installed")
    if info.avx512_bf16:
        s = bf16_speedup()
        if s >= BF16_MIN_SPEEDUP:
            return PrecisionChoice("bf16", f"{info.describe()}: bf16 measured {s:.2f}x faster than fp32")
        return PrecisionChoice("fp32", f"{info.describe()}: bf16 measured only {s:.2f}x fp32")
    return PrecisionChoice("fp32", f"{info.describe()}: no fast bf16, OpenVINO not installed "
                                   "(pip install 'ovsam[openvino]')")
