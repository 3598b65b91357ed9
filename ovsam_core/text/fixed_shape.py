"""Text-transformer forward whose every matrix product has a fixed shape.

Truncating the causal text transformer to the batch's longest prompt is exact in real
arithmetic, but BLAS kernels round differently for different matrix shapes (e.g. a linear layer
over ``N * 16`` rows vs ``N * 77`` rows), so a naive truncation differs from the full-context
run by ~4e-6. Here every product has the same shape whatever the truncation, so the two are
**bit-identical** for every position the truncated run computes, and a prompt's features do
not depend on the batch it is encoded in:

* linear layers run on blocks of exactly :data:`ROWS` token rows (the last block zero-padded);
  a row's result then depends only on that row;
* attention always runs over the full context (queries, keys and values zero-padded after the
  truncation point). Padded keys are masked (the mask is causal and every real query precedes
  them), padded values are multiplied by an exact 0, so real rows see exactly the same numbers.
  Attention is < 10 % of the tower's work at full context.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

#: Token rows per linear-layer product.
ROWS = 128


def linear_fixed(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                 rows: int = ROWS) -> torch.Tensor:
    """``F.linear`` on (M, K) evaluated as products of exactly ``rows`` rows."""
    m = x.shape[0]
    out = x.new_empty((m, weight.shape[0]))
    for s in range(0, m, rows):
        blk = x[s:s + rows]
        if blk.shape[0] < rows:
            pad = x.new_zeros((rows, x.shape[1]))
            pad[:blk.shape[0]] = blk
            out[s:] = F.linear(pad, weight, bias)[:blk.shape[0]]
        else:
            out[s:s + rows] = F.linear(blk, weight, bias)
    return out


def _attention(attn: nn.MultiheadAttention, x: torch.Tensor, mask: torch.Tensor, context: int) -> torch.Tensor:
    """Causal multi-head self-attention of (N, L, D) at a fixed key/query length ``context``."""
    n, length, d = x.shape
    h = attn.num_heads
    qkv = linear_fixed(x.reshape(n * length, d), attn.in_proj_weight, attn.in_proj_bias)
    qkv = qkv.reshape(n, length, 3, h, d // h).permute(2, 0, 3, 1, 4)  # (3, N, H, L, d/h)
    full = qkv.new_zeros((3, n, h, context, d // h))
    full[:, :, :, :length] = qkv
    q, k, v = full.reshape(3, n * h, context, d // h).unbind(0)
    scores = torch.baddbmm(mask, q * (d // h) ** -0.5, k.transpose(1, 2))
    ctx = torch.bmm(scores.softmax(dim=-1), v)[:, :length]  # (N*H, L, d/h)
    ctx = ctx.reshape(n, h, length, d // h).transpose(1, 2).reshape(n * length, d)
    return linear_fixed(ctx, attn.out_proj.weight, attn.out_proj.bias).reshape(n, length, d)


def transformer_fixed(transformer: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """open_clip ``Transformer`` (pre-LN residual blocks, batch first) on (N, L, D).

    Args:
        mask: (context, context) additive causal mask of the full context.
    """
    n, length, d = x.shape
    context = mask.shape[0]
    for blk in transformer.resblocks:
        x = x + blk.ls_1(_attention(blk.attn, blk.ln_1(x), mask, context))
        y = blk.ln_2(x).reshape(n * length, d)
        y = linear_fixed(blk.mlp.gelu(linear_fixed(y, blk.mlp.c_fc.weight, blk.mlp.c_fc.bias)),
                         blk.mlp.c_proj.weight, blk.mlp.c_proj.bias)
        x = x + blk.ls_2(y.reshape(n, length, d))
    return x
