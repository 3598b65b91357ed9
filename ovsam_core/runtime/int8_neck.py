"""The SAM2CLIP neck with int8 matrix products in PyTorch: ``ov-mixed``'s second stage on CPUs
without int8 dot products (AVX2, AVX-512 without VNNI).

OpenVINO quantises activations at run time only on CPUs with VNNI or AMX. Elsewhere, PyTorch's
dynamically quantised linear layers (oneDNN's u8 x s8 kernels) do the same job: the weights of
the transformer blocks' ``qkv``, ``proj``, ``lin1`` and ``lin2`` are int8 per output channel, the
activations are quantised per call, the attention runs in PyTorch's fused kernel
(``scaled_dot_product_attention`` with the relative-position terms as its mask, in chunks of
queries) and the rest of the neck stays fp32. On a 2-core AMD Zen 4 under AVX2 caps, C2..C5 ->
embedding took 5.5 s against 6.8 s for OpenVINO fp32 (``bench/README.md``); on the parity case
labels and top-5 are unchanged and mask IoU >= 0.99 (``tests/test_runtime_accuracy.py``).

The quantised copy shares every other module and parameter with the loaded model, which it
leaves untouched. It rests on ``torch.ao``'s dynamic quantisation, which PyTorch has deprecated:
:func:`int8_engine` checks that it still works, and ``auto`` falls back to ``ov-fp32`` when not.
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from functools import lru_cache
from typing import Dict, Iterator, Optional

import torch
from torch import nn

from ..modeling.rel_pos_attention import DEFAULT_CHUNK
from .rewrite import with_replaced

__all__ = ["int8_engine", "quantized_neck", "INT8_LINEARS"]

#: The linear layers of each transformer block that run in int8 (~73 % of the neck's multiply-adds).
INT8_LINEARS = ("attn.qkv", "attn.proj", "mlp.lin1", "mlp.lin2")
#: PyTorch quantised engines, preferred first (oneDNN was the fastest under AVX2 caps: 4.8 s
#: against 5.1 s for fbgemm and 5.3 s for x86 on the neck's blocks).
ENGINES = ("onednn", "x86", "fbgemm")


@contextlib.contextmanager
def _engine(name: str) -> Iterator[None]:
    """PyTorch's quantised engine set to ``name`` while weights are packed (it is global state)."""
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        with warnings.catch_warnings():  # torch.ao's quantised tensors warn that they are deprecated
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.backends.quantized.engine = before


def _dynamic_linear(linear: nn.Linear) -> nn.Module:
    """An int8 (per output channel) dynamically quantised copy of ``linear``; ``linear`` is not touched."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    src = copy.copy(linear)  # from_float reads .qconfig: set it on a copy, not on the shared module
    src.qconfig = per_channel_dynamic_qconfig
    return DynamicLinear.from_float(src)


@lru_cache(maxsize=1)
def int8_engine() -> Optional[str]:
    """The PyTorch quantised engine that runs dynamic int8 linear layers here, or ``None``.

    Checked once by quantising and running a small layer, so that a PyTorch without (or
    without working) ``torch.ao`` dynamic quantisation means ``None``, never an error.
    """
    supported = torch.backends.quantized.supported_engines
    for name in ENGINES:
        if name not in supported:
            continue
        try:
            with _engine(name), torch.inference_mode():
                ref = nn.Linear(64, 32)
                x = torch.randn(4, 64)
                err = (_dynamic_linear(ref)(x) - ref(x)).abs().max().item()
            if err < 0.1:
                return name
        except Exception:  # noqa: BLE001 - any failure means: not usable here
            continue
    return None


def quantized_neck(neck: nn.Module, chunk: int = DEFAULT_CHUNK) -> nn.Module:
    """A copy of the SAM2CLIP ``neck`` whose blocks' :data:`INT8_LINEARS` are int8 and whose
    attention runs in the ``sdpa`` kernel (``chunk`` queries at a time).

    Same call as the neck: ``[C2..C5] -> (1, prompt_dim, S/16, S/16)``. Raises ``RuntimeError``
    when PyTorch has no working int8 engine (:func:`int8_engine`).
    """
    engine = int8_engine()
    if engine is None:
        raise RuntimeError("this PyTorch cannot run dynamically quantised int8 layers; use --dtype ov-fp32")
    replace: Dict[str, nn.Module] = {}
    with _engine(engine):
        for i, block in enumerate(neck.blocks):
            for name in INT8_LINEARS:
                replace[f"blocks.{i}.{name}"] = _dynamic_linear(block.get_submodule(name))
    out = with_replaced(neck, replace)
    for block in out.blocks:  # the attention modules on the replaced paths are the copy's own
        block.attn.kernel = "sdpa"
        block.attn.chunk = chunk
    return out.eval()
