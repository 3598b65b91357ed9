"""CLIP2SAM feature pyramid (mmdet FPN with default arguments, re-written in plain PyTorch)."""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvUnit(nn.Module):
    """A bare conv under the key ``conv`` (the layout of mmcv's ConvModule without norm/act)."""

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FPN(nn.Module):
    """Top-down FPN: [C2..C5] -> [P2..P5], each with ``out_channels`` and the input's stride."""

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(ConvUnit(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(ConvUnit(out_channels, out_channels, 3) for _ in in_channels)

    def forward(self, feats: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        lat = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[2:], mode="nearest")
        return [conv(x) for conv, x in zip(self.fpn_convs, lat)]
