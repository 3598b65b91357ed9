"""Frozen CLIP ModifiedResNet trunk (C2..C5) and its attention-pool head.

Built from open_clip's modules; the sub-modules are registered under the upstream OVSAM names
(``stem``, ``layer1..4``, ``head``) so that state-dict keys match the official checkpoints.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn
from open_clip.modified_resnet import ModifiedResNet

from ..config import ArchConfig


class CLIPResNetBackbone(nn.Module):
    """CLIP ResNet trunk returning four feature maps.

    Input: (B, 3, S, S) float, normalised with the SAM/ImageNet statistics (0-255 scale).
    Output of :meth:`forward`: ``[C2, C3, C4, C5]`` with strides 4, 8, 16, 32 and channels
    ``cfg.backbone_channels`` (384, 768, 1536, 3072 for RN50x16).
    ``head`` (attention pool) maps (N, C5, P, P) RoI crops to (N, clip_embed_dim).
    """

    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        resnet = ModifiedResNet(
            layers=list(cfg.clip_layers),
            output_dim=cfg.clip_embed_dim,
            heads=cfg.clip_heads,
            image_size=cfg.clip_pool_size * 32,
            width=cfg.clip_width,
        )
        self.stem = nn.Sequential(
            resnet.conv1, resnet.bn1, resnet.act1,
            resnet.conv2, resnet.bn2, resnet.act2,
            resnet.conv3, resnet.bn3, resnet.act3,
        )
        self.avgpool = resnet.avgpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4
        self.head = resnet.attnpool

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.avgpool(self.stem(x))
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats
