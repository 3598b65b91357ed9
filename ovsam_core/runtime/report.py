"""``ovsam runtime``: what this machine is and what ``dtype="auto"`` picks on it, and why."""
from __future__ import annotations

import torch

from .auto import bf16_advice, bf16_speedup, resolve_precision
from .isa import cpu_info
from .int8_neck import int8_engine
from .openvino_encoder import mixed_neck_engine, openvino_available


def runtime_report(device: str = "cpu", measure: bool = False, refresh: bool = False) -> str:
    """A few lines: ISA, torch threads, bf16 advice (measured with ``measure``), OpenVINO, auto's pick."""
    info = cpu_info()
    dev = torch.device(device)
    lines = [f"CPU: {info.describe()}", f"torch {torch.__version__}, {torch.get_num_threads()} threads",
             f"bf16: {bf16_advice(info)}",
             "int8: " + _int8_line(info)]
    if measure or refresh:
        lines.append(f"bf16 micro-benchmark: {bf16_speedup(refresh=refresh):.2f}x fp32 (cached per machine)")
    if openvino_available():
        import openvino

        lines.append(f"OpenVINO {openvino.__version__}" + (", NNCF (int8)" if openvino_available(True) else
                                                           ", no NNCF (int8 unavailable)"))
    else:
        lines.append("OpenVINO: not installed (pip install 'ovsam[openvino]' for the accelerated CPU encoder)")
    choice = resolve_precision("auto", dev)
    lines.append(f"--dtype auto on {dev.type} (real-size model): {choice.name} ({choice.reason})")
    return "\n".join(lines)


def _int8_line(info) -> str:
    engine = mixed_neck_engine(info)
    if engine == "openvino":
        return "int8 dot products (AVX512-VNNI or AMX): ov-mixed and ov-int8 run here"
    mixed = (f"ov-mixed runs its int8 neck in PyTorch ({int8_engine()} engine)" if engine else
             "PyTorch cannot run int8 layers here, so ov-mixed is unavailable too")
    return f"no int8 dot products (no AVX512-VNNI or AMX): ov-int8 unavailable, {mixed}"
