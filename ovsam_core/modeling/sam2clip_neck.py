"""SAM2CLIP neck: multi-level CLIP features -> a SAM-like (B, 256, 64, 64) image embedding.

Upstream ``MultiLayerTransformerNeck``: one patch embedding per level to a common stride-16
grid, a learned level encoding, SAM's absolute position embedding, SAM ViT blocks
(windowed + global attention with relative positions, computed in query chunks by
:mod:`.rel_pos_attention`) and SAM's encoder neck.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.image_encoder import Block

from ..config import ArchConfig
from .rel_pos_attention import use_chunked_attention


class PatchEmbed(nn.Module):
    """Projection of one level to the stride-16 grid (key ``projection``, as mmdet's PatchEmbed)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if stride > 16:
            k = stride // 16
            self.projection: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, k, stride=k)
        else:
            k = 16 // stride
            self.projection = nn.Conv2d(in_channels, out_channels, k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, H', W', D), channel-last like SAM's ViT
        return self.projection(x).permute(0, 2, 3, 1)


class SAM2CLIPNeck(nn.Module):
    """Maps [C2, C3, C4, C5] to the image embedding (B, prompt_dim, S/16, S/16)."""

    def __init__(self, cfg: ArchConfig, strides: Sequence[int] = (4, 8, 16, 32)) -> None:
        super().__init__()
        grid = cfg.embedding_size
        dim = cfg.neck_dim
        self.patch_embeds = nn.ModuleList(
            PatchEmbed(c, dim, s) for c, s in zip(cfg.backbone_channels, strides)
        )
        self.level_encoding = nn.Embedding(len(strides), dim)
        # A buffer upstream (copied from SAM ViT-H's pos_embed); stored in the checkpoint.
        self.register_buffer("pos_embed", torch.zeros(1, grid, grid, dim))
        self.blocks = nn.ModuleList(
            Block(
                dim=dim,
                num_heads=cfg.neck_heads,
                mlp_ratio=4.0,
                qkv_bias=True,
                norm_layer=lambda d: nn.LayerNorm(d, eps=1e-6),
                act_layer=nn.GELU,
                use_rel_pos=True,
                rel_pos_zero_init=True,
                window_size=0 if i in cfg.neck_global_blocks else cfg.neck_window_size,
                input_size=(grid, grid),
            )
            for i in range(cfg.neck_depth)
        )
        # Same function and keys as SAM's attention, without its (heads, HW, HW) temporaries.
        use_chunked_attention(self.blocks)
        out = cfg.prompt_dim
        self.neck = nn.Sequential(
            nn.Conv2d(dim, out, 1, bias=False),
            LayerNorm2d(out),
            nn.Conv2d(out, out, 3, padding=1, bias=False),
            LayerNorm2d(out),
        )

    def tokens(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """[C2..C5] -> (B, S/16, S/16, neck_dim) input tokens of the transformer blocks."""
        x = None
        for i, (embed, f) in enumerate(zip(self.patch_embeds, feats)):
            y = embed(f) + self.level_encoding.weight[i]
            x = y if x is None else x + y
        return x + self.pos_embed

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens from :meth:`tokens` -> (B, prompt_dim, S/16, S/16) image embedding."""
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.transform(self.tokens(feats))
