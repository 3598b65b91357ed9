"""Inference-time evaluation of the CLIP2SAM mask decoder that shares the image side.

SAM's two-way transformer is written for one prompt per image copy: every prompt gets its own
(h*w, D) copy of the image tokens, and every attention projects all h*w image tokens. For many
prompts on one image most of that work is the same or can be reordered:

* layer 1 sees the unchanged image tokens, so its image-side projections (token->image keys and
  values, image->token queries) are computed **once per image** (:class:`SharedImageSide`);
* attention between h*w image tokens and T prompt tokens (T = 3..7) is evaluated with the
  matrix products reassociated so that nothing of size h*w x internal_dim is materialised per
  prompt: ``softmax(Q K^T) V W_o`` becomes ``softmax((x W_q^T) K^T)`` with ``W_q^T K^T`` formed
  first (D x heads*T), and the output projection is folded into the T value rows;
* the output upscaling (two stride-2, kernel-2 transposed convolutions, LayerNorm2d, GELU) acts
  on each low-resolution pixel independently, so it runs as two matrix products on the token
  layout, with LayerNorm over channels and no pixel shuffle until the final mask.

The result equals :meth:`OVSAMHead.predict_masks` up to float rounding (max |diff| of the mask
logits 4e-7 on the real-size head; tested); that method stays the reference for training, ONNX export and parity.
Prompts are processed in chunks to keep the per-prompt (h*w, D) tensors cache-sized.
"""
from __future__ import annotations

import math
from typing import Optional
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: Prompts per internal chunk at the real-size decoder (64x64 tokens, 256-d): keeps the per-prompt
#: (h*w, D) tensors small (big chunks were ~2x slower). Smaller decoders take proportionally more
#: prompts per chunk (:func:`chunk_for`; the 16x16-token, 64-d `shapes` decoder: 32, 2.3x faster than 2).
CHUNK = 2
MAX_CHUNK = 32


def chunk_for(hw: int, dim: int) -> int:
    """Prompts per chunk so that a chunk's (chunk, h*w, D) temporaries stay the size of
    ``CHUNK`` prompts of the real-size decoder (4096 tokens x 256)."""
    return max(CHUNK, min(MAX_CHUNK, CHUNK * 4096 * 256 // max(1, hw * dim)))


@dataclass(frozen=True)
class SharedImageSide:
    """Per-image tensors of the decoder's first layer, shared by all prompts.

    Attributes (HW = h*w image tokens, D = transformer dim, H heads of d channels):
        keys: (HW, D) image tokens (image embedding + the dense no-mask embedding).
        pe: (HW, D) dense positional encoding.
        keys_pe: (HW, D) ``keys + pe``.
        t2i_k / t2i_v: (H, HW, d) layer-1 token->image keys and values.
        i2t_q: (H, HW, d) layer-1 image->token queries.
        hw: (h, w) of the image-token grid.
    """

    keys: torch.Tensor
    pe: torch.Tensor
    keys_pe: torch.Tensor
    t2i_k: torch.Tensor
    t2i_v: torch.Tensor
    i2t_q: torch.Tensor
    hw: tuple


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    """(..., N, H*d) -> (..., H, N, d)."""
    *lead, n, c = x.shape
    return x.reshape(*lead, n, h, c // h).transpose(-3, -2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(..., H, N, d) -> (..., N, H*d)."""
    *lead, h, n, d = x.shape
    return x.transpose(-3, -2).reshape(*lead, n, h * d)


def shared_image_side(transformer: nn.Module, image_embedding: torch.Tensor, image_pe: torch.Tensor,
                      dense: torch.Tensor) -> SharedImageSide:
    """Precompute the image side of layer 1.

    Args:
        image_embedding / image_pe: (1, D, h, w). dense: (1, D, h, w) or (1, D, 1, 1), the dense
            prompt embedding, which must be the same for every prompt (no mask prompts).
    """
    _, c, h, w = image_embedding.shape
    keys = (image_embedding + dense)[0].flatten(1).t().contiguous()
    pe = image_pe[0].flatten(1).t().contiguous()
    keys_pe = keys + pe
    layer = transformer.layers[0]
    t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
    nh = t2i.num_heads
    return SharedImageSide(
        keys=keys, pe=pe, keys_pe=keys_pe,
        t2i_k=_heads(t2i.k_proj(keys_pe), nh).contiguous(),
        t2i_v=_heads(t2i.v_proj(keys), nh).contiguous(),
        i2t_q=_heads(i2t.q_proj(keys_pe), i2t.num_heads).contiguous(),
        hw=(h, w),
    )


def _token_to_image_shared(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Tokens (B, T, D) attend to precomputed image keys/values (H, HW, d)."""
    qh = _heads(attn.q_proj(q), attn.num_heads)  # (B, H, T, d)
    s = torch.matmul(qh, k.transpose(-1, -2)) / math.sqrt(qh.shape[-1])
    return attn.out_proj(_merge(torch.matmul(s.softmax(dim=-1), v)))


def _token_to_image(attn: nn.Module, q: torch.Tensor, keys_pe: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Tokens (B, T, D) attend to per-prompt image tokens (B, HW, D), projections reassociated.

    ``(q W_q^T)_h (keys_pe W_k^T + b_k)_h^T = [(q W_q^T)_h W_k,h] keys_pe^T + (q W_q^T)_h b_k,h``
    and ``softmax(.) (keys W_v^T + b_v)_h = (softmax(.) keys) W_v,h^T + b_v,h`` (rows sum to 1).
    """
    nh = attn.num_heads
    b, t, d_model = q.shape
    qh = _heads(attn.q_proj(q), nh)  # (B, H, T, d)
    d = qh.shape[-1]
    qh = qh / math.sqrt(d)  # exact for d = 16 (a power of 4)
    wk = attn.k_proj.weight.reshape(nh, d, d_model)  # (H, d, D)
    qk = torch.matmul(qh, wk).reshape(b, nh * t, d_model)  # (B, H*T, D)
    qb = torch.matmul(qh, attn.k_proj.bias.reshape(nh, d, 1)).reshape(b, nh * t, 1)
    p = torch.baddbmm(qb, qk, keys_pe.transpose(1, 2)).softmax(dim=-1)  # (B, H*T, HW)
    ctx = torch.bmm(p, keys).reshape(b, nh, t, d_model)  # (B, H, T, D)
    wv = attn.v_proj.weight.reshape(nh, d, d_model)
    out = torch.matmul(ctx, wv.transpose(-1, -2)) + attn.v_proj.bias.reshape(nh, 1, d)  # (B, H, T, d)
    return attn.out_proj(_merge(out))


def _image_to_token(attn: nn.Module, image: torch.Tensor, qimg: torch.Tensor, k_tok: torch.Tensor,
                    v_tok: torch.Tensor, shared_q: bool) -> torch.Tensor:
    """Image tokens attend to the T prompt tokens; returns ``image + update``, (B, HW, D).

    Args:
        image: (HW, D) or (B, HW, D) image tokens (the residual).
        qimg: (H, HW, d) projected image queries if ``shared_q`` (layer 1), else the per-prompt
            un-projected image tokens + pe (B, HW, D), whose projection is reassociated.
        k_tok: (B, T, D) tokens + pe; v_tok: (B, T, D) tokens.
    Scores are laid out (B, H, T, HW) so the softmax over the T tokens runs across a
    contiguous inner dimension.
    """
    nh = attn.num_heads
    b, t, d_model = k_tok.shape
    kh = _heads(attn.k_proj(k_tok), nh)  # (B, H, T, d)
    vh = _heads(attn.v_proj(v_tok), nh)
    d = kh.shape[-1]
    kh = kh / math.sqrt(d)
    if shared_q:
        s = torch.matmul(kh, qimg.transpose(-1, -2))  # (B, H, T, HW)
    else:
        wq = attn.q_proj.weight.reshape(nh, d, d_model)
        m = torch.matmul(kh, wq).reshape(b, nh * t, d_model)  # rows W_q,h^T k_t
        bias = torch.matmul(kh, attn.q_proj.bias.reshape(nh, d, 1)).reshape(b, nh * t, 1)
        s = torch.baddbmm(bias, m, qimg.transpose(1, 2)).reshape(b, nh, t, -1)
    p = s.softmax(dim=2).reshape(b, nh * t, -1)  # (B, H*T, HW)
    wo = attn.out_proj.weight.reshape(d_model, nh, d).permute(1, 2, 0)  # (H, d, D)
    # the output bias rides on the value rows: each image token's weights sum to H over (h, t)
    vw = torch.matmul(vh, wo).reshape(b, nh * t, d_model) + attn.out_proj.bias / nh
    return torch.baddbmm(image.expand(b, -1, -1), p.transpose(1, 2), vw)


def _two_way(transformer: nn.Module, side: SharedImageSide, tokens: torch.Tensor):
    """The two-way transformer for a chunk of B prompts; returns (queries (B, T, D), keys (B, HW, D))."""
    query_pe = tokens
    queries, keys = tokens, None
    for layer in transformer.layers:
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        queries = layer.norm1(queries)
        q = queries + query_pe
        if keys is None:
            side_t2i = _token_to_image_shared(layer.cross_attn_token_to_image, q, side.t2i_k, side.t2i_v)
            queries = layer.norm2(queries + side_t2i)
        else:
            keys_pe = keys + side.pe
            queries = layer.norm2(queries + _token_to_image(layer.cross_attn_token_to_image, q, keys_pe, keys))
        queries = layer.norm3(queries + layer.mlp(queries))
        q = queries + query_pe
        if keys is None:
            keys = layer.norm4(_image_to_token(layer.cross_attn_image_to_token, side.keys, side.i2t_q,
                                               q, queries, shared_q=True))
        else:
            keys = layer.norm4(_image_to_token(layer.cross_attn_image_to_token, keys, keys_pe,
                                               q, queries, shared_q=False))
    q = queries + query_pe
    keys_pe = keys + side.pe
    queries = queries + _token_to_image(transformer.final_attn_token_to_image, q, keys_pe, keys)
    return transformer.norm_final_attn(queries), keys


def _upscale_and_project(upscaling: nn.Sequential, src: torch.Tensor, hyper: torch.Tensor,
                         hw: tuple, block: int = 1024) -> torch.Tensor:
    """``hyper . upscaling(src)`` per prompt, evaluated per block of low-res pixels.

    A stride-2, kernel-2 transposed convolution maps each input pixel to its own 2x2 output
    block, and LayerNorm2d/GELU act per pixel, so both upscaling steps are matrix products on
    the token layout (no pixel shuffle until the final mask); blocks keep every buffer in cache.

    Args:
        src: (B, HW, D) image tokens; hyper: (B, C2) hypernetwork output.
    Returns:
        (B, 4h, 4w) mask logits.
    """
    ct1, ln, act1, ct2, act2 = upscaling
    b, n, d = src.shape
    c1, c2 = ct1.out_channels, ct2.out_channels
    # ConvTranspose2d weight (Cin, Cout, 2, 2) -> (Cin, 4 * Cout), columns ordered (ky, kx, Cout)
    w1 = ct1.weight.permute(0, 2, 3, 1).reshape(d, 4 * c1)
    w2 = ct2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)
    b1, b2 = ct1.bias.repeat(4), ct2.bias.repeat(4)
    out = src.new_empty((b, n * 16))
    for i in range(b):
        hy = hyper[i, :, None].to(src.dtype)
        for s in range(0, n, block):
            y = torch.addmm(b1, src[i, s:s + block], w1).reshape(-1, c1)
            y = act1(F.layer_norm(y, (c1,), ln.weight, ln.bias, ln.eps))
            z = act2(torch.addmm(b2, y, w2)).reshape(-1, c2)
            torch.mm(z, hy, out=out[i, s * 16:(s + block) * 16, None])
    # axes: (b, i, j, ky1, kx1, ky2, kx2) -> row 4i + 2ky1 + ky2, col 4j + 2kx1 + kx2
    m = out.reshape(b, hw[0], hw[1], 2, 2, 2, 2)
    return m.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, 4 * hw[0], 4 * hw[1])


def predict_masks_shared(head: nn.Module, image_embedding: torch.Tensor, image_pe: torch.Tensor,
                         sparse: torch.Tensor, dense: torch.Tensor, chunk: Optional[int] = None) -> torch.Tensor:
    """(N, 1, 4h, 4w) low-resolution mask logits; same contract as ``OVSAMHead.predict_masks``.

    Args:
        head: an :class:`~ovsam_core.modeling.ovsam_head.OVSAMHead`.
        image_embedding / image_pe: (1, D, h, w). sparse: (N, T, D) prompt tokens.
        dense: the dense prompt embedding, identical for all prompts: (1, D, h, w), (1, D, 1, 1)
            or an (N, D, h, w) expansion of one of them (only its first row is read).
    """
    dec = head.mask_decoder
    n = sparse.shape[0]
    side = shared_image_side(dec.transformer, image_embedding, image_pe, dense[:1])
    if chunk is None:
        chunk = chunk_for(image_embedding.shape[-2] * image_embedding.shape[-1], image_embedding.shape[1])
    fixed = torch.cat([head.label_token.weight, dec.mask_tokens.weight], dim=0)
    outs = []
    for s in range(0, n, chunk):
        sp = sparse[s:s + chunk]
        tokens = torch.cat([fixed[None].expand(sp.shape[0], -1, -1), sp], dim=1)
        hs, src = _two_way(dec.transformer, side, tokens)
        hyper = dec.output_hypernetworks_mlps[0](hs[:, 1, :])
        outs.append(_upscale_and_project(dec.output_upscaling, src, hyper, side.hw))
    return torch.cat(outs)[:, None]
