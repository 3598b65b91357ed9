"""Frozen-CLIP recognition branch fusion (upstream evaluation path, "fused" mode)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

#: Geometric-mean weights of the CLIP branch for base (seen) and novel classes.
ALPHA = 0.1
BETA = 0.9
#: Score given to classes that are neither base nor novel (upstream's COCO "other" classes).
UNKNOWN_SCORE = -1000.0


def fuse_logits(
    head_logits: torch.Tensor,
    clip_logits: torch.Tensor,
    base: torch.Tensor,
    valid: torch.Tensor,
    known: Optional[torch.Tensor] = None,
    alpha: float = ALPHA,
    beta: float = BETA,
) -> torch.Tensor:
    """Geometric-mean fusion of the head's and frozen CLIP's class probabilities.

    ``log(q^(1-a) c^a)`` for base classes and the background, ``log(q^(1-b) c^b)`` for the
    others, where q and c are the softmaxes (background included) of the two logit sets.

    Args:
        head_logits, clip_logits: (N, C + 1), background last.
        base: (C,) bool, True for classes seen in training (base); False for novel ones.
        valid: (N,) bool, False where the predicted mask is empty (then the score is log q).
        known: (C,) bool or None; classes with False are set to -1000 (neither base nor novel).
    Returns:
        (N, C + 1) fused log-scores.
    """
    q = F.softmax(head_logits[:, None], dim=-1)
    c = F.softmax(clip_logits[:, None], dim=-1)
    overlap = torch.cat([base.to(q.dtype), q.new_ones(1)])
    v = valid.to(q.dtype)[:, None, None]
    a = alpha * v
    b = beta * v
    fused = torch.log(q ** (1 - a) * c ** a) * overlap + torch.log(q ** (1 - b) * c ** b) * (1 - overlap)
    fused = fused[:, 0]
    if known is not None:
        unknown = torch.cat([~known.bool(), known.new_zeros(1, dtype=torch.bool)])
        fused = fused.masked_fill(unknown, UNKNOWN_SCORE)
    return fused
