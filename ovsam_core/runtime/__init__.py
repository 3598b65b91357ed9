"""How the image encoder runs on this machine: ISA detection, ``dtype="auto"``, OpenVINO.

* :func:`cpu_info` -- the effective ISA (AMX, AVX512-BF16, AVX512, AVX2), honouring the
  emulation caps ``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA`` / ``MKL_ENABLE_INSTRUCTIONS``.
* :func:`resolve_precision` -- what ``auto`` picks and why (see :mod:`.auto`).
* :class:`OpenVINOEncoder` -- the encoder compiled by OpenVINO, fp32, bf16, mixed or NNCF int8,
  cached on disk by model signature (optional extra ``ovsam[openvino]``); int8 calibration sets
  in :mod:`.calibration`; ``mixed``'s int8 neck in PyTorch on CPUs without VNNI in
  :mod:`.int8_neck`.
"""
from .auto import CHOICES, PRECISIONS, PrecisionChoice, bf16_advice, bf16_speedup, resolve_precision, validate_precision
from .isa import CpuInfo, cpu_info
from .openvino_encoder import OpenVINOEncoder, OpenVINOUnavailable, calibration_inputs, openvino_available

__all__ = ["CHOICES", "PRECISIONS", "PrecisionChoice", "bf16_advice", "bf16_speedup", "resolve_precision",
           "validate_precision", "CpuInfo", "cpu_info", "OpenVINOEncoder", "OpenVINOUnavailable",
           "calibration_inputs", "openvino_available"]
