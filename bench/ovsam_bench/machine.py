"""The machine block of every report: CPU, ISA (effective, emulation included), load, versions."""
from __future__ import annotations

import os
import platform
from typing import Any, Dict

import torch

from ovsam_core.runtime.isa import EMULATION_ENV

from .measure import NCPU


def machine_info(threads: int) -> Dict[str, Any]:
    cpu_model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu_model == "unknown":
                    cpu_model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    mem_gb = float("nan")
    try:
        with open("/proc/meminfo") as f:
            mem_gb = int(f.readline().split()[1]) / 1024 ** 2
    except OSError:
        pass
    hyper = "unknown"
    if "hypervisor" in flags:
        hyper = "yes (VM)"
    interesting = ["avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "amx_int8"]
    import torchvision
    info = {
        "cpu_model": cpu_model, "logical_cpus": NCPU, "mem_gb": round(mem_gb, 1),
        "isa": [f for f in interesting if f in flags], "virtualised": hyper,
        "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "threads": torch.get_num_threads(), "threads_requested": threads,
        "platform": platform.platform(),
        "effective_isa": _effective_isa(),
        "emulation": {k: os.environ[k] for k in EMULATION_ENV if os.environ.get(k)},
        "loadavg": list(os.getloadavg()),
    }
    for mod in ("open_clip", "segment_anything"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "installed")
        except Exception:  # noqa: BLE001
            info[mod] = "missing"
    return info




def _effective_isa() -> str:
    from ovsam_core.runtime import cpu_info

    return cpu_info().describe()
