"""CLIP's attention pool, evaluated for the one output token that is used.

open_clip's ``AttentionPool2d`` runs full self-attention over the 1 + P*P tokens of a feature
map (mean token first) and keeps token 0. For the frozen-CLIP recognition branch, which pools one
RoI crop per prompt, that is ~4.4 GMAC per RoI on RN50x16 (P = 12, width 3072). Only token 0's
query is needed, and its key/value projections can be reassociated onto the tokens:

``softmax(q0_h . (x W_k,h^T + b_k,h)) (x W_v,h^T + b_v,h) = (p_h x) W_v,h^T + b_v,h`` with
``p_h = softmax((q0_h W_k,h) x^T)`` (the ``q0_h . b_k,h`` term is constant over tokens and
cancels in the softmax). That is ~70 MMAC per RoI, equal up to float rounding (tested).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def attnpool_first_token(pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Output of ``pool(x)`` (an open_clip ``AttentionPool2d``) for (N, C, P, P) maps -> (N, out)."""
    n, c = x.shape[:2]
    tokens = x.reshape(n, c, -1).transpose(1, 2)  # (N, P*P, C)
    tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
    tokens = tokens + pool.positional_embedding.to(tokens.dtype)
    nh = pool.num_heads
    d = c // nh
    # per-head products batched over heads (H, N, .) so no weight is copied per RoI
    q0 = (pool.q_proj(tokens[:, 0]) / math.sqrt(d)).reshape(n, nh, d).transpose(0, 1)  # (H, N, d)
    qk = torch.bmm(q0, pool.k_proj.weight.reshape(nh, d, c)).transpose(0, 1)  # (N, H, C)
    scores = torch.bmm(qk, tokens.transpose(1, 2))  # (N, H, 1 + P*P)
    ctx = torch.bmm(scores.softmax(dim=-1), tokens).transpose(0, 1)  # (H, N, C)
    wv = pool.v_proj.weight.reshape(nh, d, c)
    out = torch.bmm(ctx, wv.transpose(1, 2)).transpose(0, 1).reshape(n, c) + pool.v_proj.bias
    return pool.c_proj(out)
