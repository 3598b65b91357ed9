"""What the CPU can do fast: torch's kernel level, oneDNN's ISA cap, AMX / AVX512-BF16 / VNNI flags.

bf16 is only fast where the hardware multiplies bf16 natively (AMX tiles, or AVX512-BF16
dot products); on AVX2-only CPUs PyTorch emulates it and bf16 is several times *slower* than
fp32. The emulation variables ``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA`` and
``MKL_ENABLE_INSTRUCTIONS`` cap what the libraries use (``bench/`` runs the AVX2 case this
way on any machine), so they are part of what "this CPU" means here.
"""
from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from typing import FrozenSet

#: oneDNN ISA names from the weakest, as ``ONEDNN_MAX_CPU_ISA`` takes them.
_ONEDNN_ORDER = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                 "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX",
                 "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "AVX10_2_512",
                 "AVX10_2_512_AMX_2", "ALL", "DEFAULT")
EMULATION_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
#: The environment that makes any x86 machine an AVX2-only CPU for torch, oneDNN and MKL (set
#: before torch is imported: the bench and the tests start a process with it).
AVX2_EMULATION = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def _onednn_allows(isa: str) -> bool:
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    if cap in ("ALL", "DEFAULT") or cap not in _ONEDNN_ORDER:
        return True
    return _ONEDNN_ORDER.index(cap) >= _ONEDNN_ORDER.index(isa)


def _cpu_flags() -> tuple[str, FrozenSet[str]]:
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key == "flags":
                    flags = frozenset(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model, flags


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as the numeric libraries see it (hardware flags capped by the emulation env).

    Attributes:
        model: CPU model name.
        capability: torch's kernel level (``torch.backends.cpu.get_cpu_capability()``:
            ``DEFAULT``, ``AVX2``, ``AVX512``, ...).
        amx: AMX bf16 tiles usable (hardware flag and oneDNN cap).
        avx512_bf16: AVX512-BF16 usable (hardware flag, torch at AVX512, oneDNN cap).
        avx512: AVX-512 usable by torch's kernels.
        emulation: the capping env variables that are set, ``NAME=value`` joined by spaces.
        vnni: int8 dot products usable by oneDNN (AVX512-VNNI or AMX; OpenVINO's run-time
            quantisation of ``ov-mixed`` needs them).
    """

    model: str
    capability: str
    amx: bool
    avx512_bf16: bool
    avx512: bool
    emulation: str
    vnni: bool = False

    @property
    def isa(self) -> str:
        """Short name of the effective ISA: ``AMX``, ``AVX512-BF16``, ``AVX512``, ``AVX2`` or ``other``."""
        if self.amx:
            return "AMX"
        if self.avx512_bf16:
            return "AVX512-BF16"
        if self.avx512:
            return "AVX512"
        return "AVX2" if self.capability.upper().startswith("AVX2") else "other"

    @property
    def fast_bf16(self) -> bool:
        """bf16 runs on native bf16 hardware (AMX or AVX512-BF16); elsewhere it is emulated."""
        return self.amx or self.avx512_bf16

    @property
    def key(self) -> str:
        """A short stable key of this CPU + caps (for per-machine caches)."""
        import torch

        raw = "|".join([self.model, self.capability, str(self.amx), str(self.avx512_bf16), str(self.vnni),
                        self.emulation,
                        torch.__version__, str(torch.get_num_threads())])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def describe(self) -> str:
        emu = f", emulated: {self.emulation}" if self.emulation else ""
        vnni = ", VNNI" if self.vnni and not self.amx else ""
        return f"{self.isa} ({self.model}; torch kernels {self.capability}{vnni}{emu})"


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """The effective ISA of this process (cached: the caps are read at import time anyway)."""
    import torch

    model, flags = _cpu_flags()
    cap = torch.backends.cpu.get_cpu_capability()
    avx512 = cap.upper().startswith("AVX512")
    amx = "amx_bf16" in flags and avx512 and _onednn_allows("AVX512_CORE_AMX")
    bf16 = "avx512_bf16" in flags and avx512 and _onednn_allows("AVX512_CORE_BF16")
    vnni = amx or ("avx512_vnni" in flags and avx512 and _onednn_allows("AVX512_CORE_VNNI"))
    emulation = " ".join(f"{k}={os.environ[k]}" for k in EMULATION_ENV if os.environ.get(k))
    return CpuInfo(model=model, capability=cap, amx=amx, avx512_bf16=bf16, avx512=avx512, emulation=emulation,
                   vnni=vnni)
