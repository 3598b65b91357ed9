"""Winograd 3x3 convolutions for the exported (OpenVINO) encoder graphs.

A stride-1 3x3 convolution computed by the Winograd minimal-filtering algorithm F(m x m, 3 x 3)
(Lavin & Gray, 2016): the padded input is cut into overlapping (m+2)² tiles with stride m, each
tile and each filter are transformed (``Bᵀ d B``, ``G g Gᵀ``), the products of the two become
(m+2)² independent matrix products over the channels, and ``Aᵀ M A`` turns them back into m²
outputs. F(4x4, 3x3) needs 4x fewer multiplications than the direct convolution, F(2x2, 3x3)
2.25x fewer; the transforms cost memory traffic, so it pays only where the channels are many
and the maps small. The arithmetic is fp32 with an error of a few 1e-6 relative per layer (the
direct convolution's is ~1e-6; on RN50x16's stage 1, P2 and C5 differ by ~2e-6).

The filter transform holds (m+2)²/9 times the filter's weights (4x for m=4), so only the layers
that gain enough are rewritten (:data:`CHANNELS`), and only in the graphs of a resident
encoder (a server, a notebook), not in ``ovsam predict``'s lean one.

This is written from the published algorithm (transform matrices for the points 0, ±1, ±2, ∞);
it is used only to build the graphs that OpenVINO compiles, never by the PyTorch reference path.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .rewrite import with_replaced

__all__ = ["WinogradConv3x3", "winograd_layers", "winograd_rewrite", "CHANNELS"]

#: The channel counts (in and out) of the 3x3 convolutions that are rewritten. Below 192 (RN50x16's
#: 96-channel layer1 on 256² maps) the transforms cost more than the products save; above 512
#: (its 768-channel layer4) the filters, 4x larger once transformed, would add ~0.5 GB to the
#: encoder for ~0.2 s. Measured on 2 cores (Zen 4), stage 1 of RN50x16 at 1024²: 5.81 -> 5.24 s
#: under AVX2 caps, 5.55 -> 4.90 s natively (4.65 s with layer4 too).
CHANNELS = (192, 512)


def _matrices(m: int):
    """(Bᵀ, G, Aᵀ) of F(m x m, 3 x 3), float64."""
    if m == 2:
        bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
        g = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
        at = [[1, 1, 1, 0], [0, 1, -1, -1]]
    elif m == 4:
        bt = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
              [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
        g = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
             [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]
        at = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
    else:
        raise ValueError(f"Winograd tile {m} not supported: use 2 or 4")
    return tuple(torch.tensor(v, dtype=torch.float64) for v in (bt, g, at))


class WinogradConv3x3(nn.Module):
    """``conv2d(x, weight, bias, stride=1, padding=1)`` of a (1, C, H, W) input by F(m x m, 3 x 3).

    Args:
        weight: (Cout, Cin, 3, 3) filter; bias: (Cout,) or None.
        m: output tile (2 or 4). H and W must be multiples of ``m`` (else the direct convolution runs).

    Buffers: ``u`` ((m+2)², Cout, Cin) transformed filters; ``bt`` / ``at`` the input and output
    transforms of a whole tile (Kronecker products of Bᵀ and Aᵀ).
    """

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], m: int = 4) -> None:
        super().__init__()
        bt, g, at = _matrices(m)
        n = m + 2
        cout, cin = weight.shape[:2]
        u = torch.einsum("ai,ocij,bj->aboc", g, weight.detach().double(), g).reshape(n * n, cout, cin)
        self.m = m
        self.register_buffer("u", u.float().contiguous())
        # the input transform as a one-channel convolution with n² kernels of n x n, stride m
        self.register_buffer("bt", torch.kron(bt, bt).float().reshape(n * n, 1, n, n))
        self.register_buffer("at", torch.kron(at, at).float())  # (m², n²)
        self.register_buffer("weight", weight.detach())  # for the direct fallback
        self.register_buffer("bias", None if bias is None else bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        m, nn2 = self.m, self.u.shape[0]
        if b != 1 or h % m or w % m:
            return F.conv2d(x, self.weight, self.bias, padding=1)
        th, tw = h // m, w // m
        v = F.conv2d(x.reshape(c, 1, h, w), self.bt, stride=m, padding=1)  # (C, n², th, tw)
        v = v.reshape(c, nn2, th * tw).transpose(0, 1)  # (n², C, T)
        prod = torch.matmul(self.u, v)  # (n², Cout, T)
        cout = prod.shape[1]
        y = torch.matmul(self.at, prod.reshape(nn2, cout * th * tw))  # (m², Cout*T)
        y = y.reshape(m, m, cout, th, tw).permute(2, 3, 0, 4, 1).reshape(1, cout, h, w)
        return y if self.bias is None else y + self.bias.view(1, cout, 1, 1)


def _folded(conv: nn.Conv2d, bn: Optional[nn.BatchNorm2d]):
    """(weight, bias) of ``conv`` followed by the eval-mode ``bn`` (or of ``conv`` alone)."""
    if bn is None:
        return conv.weight.detach(), None if conv.bias is None else conv.bias.detach()
    w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
    return w.detach(), b.detach()


def _eligible(mod: nn.Module, channels: Tuple[int, int]) -> bool:
    return (type(mod) is nn.Conv2d and mod.kernel_size == (3, 3) and mod.stride == (1, 1)
            and mod.padding == (1, 1) and mod.dilation == (1, 1) and mod.groups == 1
            and mod.padding_mode == "zeros"
            and channels[0] <= min(mod.in_channels, mod.out_channels)
            and max(mod.in_channels, mod.out_channels) <= channels[1])


def winograd_layers(module: nn.Module, channels: Tuple[int, int] = CHANNELS) -> List[str]:
    """Names of the 3x3 convolutions of ``module`` that :func:`winograd_rewrite` replaces:
    stride 1, padding 1, no dilation or groups, in and out channels within ``channels``."""
    return [name for name, mod in module.named_modules() if _eligible(mod, channels)]


def winograd_rewrite(module: nn.Module, *, m: int = 4, channels: Tuple[int, int] = CHANNELS) -> nn.Module:
    """A copy of ``module`` whose :func:`winograd_layers` are :class:`WinogradConv3x3`.

    A ``convN`` followed by an eval-mode ``bnN`` in the same parent (the CLIP ResNet's layout)
    has the batch norm folded in and replaced by an identity. The copy shares every other module
    and all parameters with ``module``, which is left untouched.
    """
    replace: Dict[str, nn.Module] = {}
    for name in winograd_layers(module, channels):
        conv = module.get_submodule(name)
        parent_name, _, leaf = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        bn_name = "bn" + leaf[len("conv"):] if leaf.startswith("conv") else ""
        bn = getattr(parent, bn_name, None) if bn_name else None
        if not (isinstance(bn, nn.BatchNorm2d) and not bn.training and bn.track_running_stats):
            bn = None
        replace[name] = WinogradConv3x3(*_folded(conv, bn), m=m)
        if bn is not None:
            replace[f"{parent_name}.{bn_name}" if parent_name else bn_name] = nn.Identity()
    return with_replaced(module, replace)
