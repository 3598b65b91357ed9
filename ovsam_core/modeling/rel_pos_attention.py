"""SAM's ViT attention with decomposed relative positions, computed in query chunks.

SAM's ``Attention`` materialises the (heads, HW, HW) score matrix three times over (scores,
scores + rel-pos bias, softmax): for the SAM2CLIP neck's global block (16 heads, 64x64 tokens)
that is ~3 GB of temporaries. :class:`ChunkedRelPosAttention` has the same parameters (same
state-dict keys) and computes the same function one block of query rows at a time, so at most
``heads x chunk x HW`` scores exist at once (~64 MB at the default chunk of 256 queries).

Two kernels, chosen by :attr:`ChunkedRelPosAttention.kernel`:

* ``"exact"`` (default): SAM's operations in SAM's order on each chunk: ``(q * scale) @ k^T``,
  plus the decomposed bias, softmax, ``@ v``. Each query row sees exactly the same arithmetic,
  so it equals SAM's module up to the BLAS's blocking (max |diff| ~1e-6; the parity reference).
* ``"sdpa"``: ``F.scaled_dot_product_attention`` with the bias as an additive mask (the fused
  CPU flash kernel); equal up to float rounding, faster on some CPUs (``bench/``).
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos

#: Queries per chunk: bounds the score temporaries to heads x chunk x HW floats.
DEFAULT_CHUNK = 256
KERNELS = ("exact", "sdpa")


def rel_pos_terms(q: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor,
                  rows: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two decomposed relative-position terms of a block of query rows.

    Args:
        q: (BH, (r1 - r0) * q_w, C) unscaled queries of rows ``rows = (r0, r1)``.
        rel_h: (q_h, k_h, C), rel_w: (q_w, k_w, C) from :func:`get_rel_pos`.
    Returns:
        (BH, r1 - r0, q_w, k_h, 1) and (BH, r1 - r0, q_w, 1, k_w): SAM's ``add_decomposed_rel_pos``
        adds them, in this order, to the scores viewed as (BH, rows, q_w, k_h, k_w).
    """
    r0, r1 = rows
    bh, _, c = q.shape
    r_q = q.reshape(bh, r1 - r0, rel_w.shape[0], c)
    bias_h = torch.einsum("bhwc,hkc->bhwk", r_q, rel_h[r0:r1])
    bias_w = torch.einsum("bhwc,wkc->bhwk", r_q, rel_w)
    return bias_h[:, :, :, :, None], bias_w[:, :, :, None, :]


class ChunkedRelPosAttention(Attention):
    """Drop-in replacement of SAM's ``Attention`` (same keys) with bounded memory.

    Input/output: (B, H, W, dim) channel-last tokens, as SAM's module.
    """

    chunk: int = DEFAULT_CHUNK
    kernel: str = "exact"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        nh = self.num_heads
        qkv = self.qkv(x).reshape(b, h * w, 3, nh, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * nh, h * w, -1).unbind(0)
        if self.use_rel_pos:
            rel_h = get_rel_pos(h, h, self.rel_pos_h)
            rel_w = get_rel_pos(w, w, self.rel_pos_w)
        rows = max(1, min(h, self.chunk // w))
        kt = k.transpose(-2, -1)
        outs = []  # out-of-place throughout: traceable by ONNX / OpenVINO converters
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            qc = q[:, r0 * w:r1 * w]
            n = qc.shape[1]
            if self.kernel == "sdpa":
                mask = None
                if self.use_rel_pos:
                    bias_h, bias_w = rel_pos_terms(qc, rel_h, rel_w, (r0, r1))
                    mask = (bias_h + bias_w).reshape(1, -1, n, h * w)
                outs.append(F.scaled_dot_product_attention(
                    qc.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), attn_mask=mask, scale=self.scale)[0])
                continue
            attn = (qc * self.scale) @ kt
            if self.use_rel_pos:
                bias_h, bias_w = rel_pos_terms(qc, rel_h, rel_w, (r0, r1))
                attn = (attn.view(-1, r1 - r0, w, h, w) + bias_h + bias_w).view(-1, n, h * w)
            outs.append(attn.softmax(dim=-1) @ v)
            del attn
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        x = out.view(b, nh, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(x)


def use_chunked_attention(module: torch.nn.Module, chunk: int = DEFAULT_CHUNK, kernel: str = "exact") -> int:
    """Switch every SAM ``Attention`` under ``module`` to :class:`ChunkedRelPosAttention` in place.

    Parameters are kept (no copy); returns the number of modules switched.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown attention kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    n = 0
    for m in module.modules():
        if isinstance(m, Attention):
            m.__class__ = ChunkedRelPosAttention
            m.chunk = chunk
            m.kernel = kernel
            n += 1
    return n
