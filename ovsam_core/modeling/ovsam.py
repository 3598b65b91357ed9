"""The OVSAM model: CLIP trunk + SAM2CLIP neck + SAM prompt encoder + CLIP2SAM FPN/head.

Child names (``backbone``, ``neck``, ``pe``, ``mask_decoder``, ``fpn_neck``) are the
upstream ones, so ``state_dict()`` has exactly the keys of the official checkpoints
(``shared/docs/upstream-ovsam-state-dict-keys.tsv``).

Coordinate frame: every box/point here is in the *model frame*: pixels of the resized and
bottom/right-padded ``image_size`` x ``image_size`` input (1024 upstream). Mapping from
original-image pixels is the caller's job (see :mod:`ovsam_core.preprocess`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align
from segment_anything.modeling.prompt_encoder import PromptEncoder

from ..config import ArchConfig
from .backbone import CLIPResNetBackbone
from .clip_pool import attnpool_first_token
from .fpn import FPN
from .ovsam_head import HeadOutput, OVSAMHead, PackedClassifier, classify
from .sam2clip_neck import SAM2CLIPNeck
from .fusion import fuse_logits

FPN_STRIDES = (4, 8, 16, 32)
#: A (C, P, D) prototype tensor or its :class:`PackedClassifier` (see :func:`classify`).
Classifier = Union[torch.Tensor, PackedClassifier]


@dataclass(frozen=True)
class ImageFeatures:
    """Everything the decoder needs from one image (batch size 1).

    Attributes:
        embedding: (1, prompt_dim, S/16, S/16) SAM2CLIP image embedding.
        fpn: (P2, P3, P4, P5), each (1, prompt_dim, S/stride, S/stride).
        c5: (1, C5, S/32, S/32) last CLIP trunk map (frozen-CLIP branch of "fused" mode).
        backbone: (C2, C3, C4, C5) when requested with ``keep_backbone=True``, else None.
    """

    embedding: torch.Tensor
    fpn: Tuple[torch.Tensor, ...]
    c5: torch.Tensor
    backbone: Optional[Tuple[torch.Tensor, ...]] = None

    def nbytes(self) -> int:
        ts = [self.embedding, self.c5, *self.fpn, *(self.backbone or ())]
        return sum(t.numel() * t.element_size() for t in ts)


def clip_branch_logits(attn_pool: nn.Module, c5: torch.Tensor, boxes: torch.Tensor,
                       classifier: Classifier, pool_size: int) -> torch.Tensor:
    """Frozen-CLIP recognition: RoIAlign of ``boxes`` on C5 + CLIP's attention pool.

    The pool is evaluated for its output token only (:func:`attnpool_first_token`; equal to
    ``attn_pool(crops)`` up to float rounding, ~60x fewer operations).

    Args:
        c5: (1, C5, S/32, S/32); boxes: (N, 4) RoIs in the frame of the model input.
    Returns:
        (N, C + 1) logits, background last.
    """
    rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
    crops = roi_align(c5, rois, (pool_size, pool_size), spatial_scale=1 / 32, sampling_ratio=0, aligned=True)
    return classify(attnpool_first_token(attn_pool, crops), classifier)


class OVSAM(nn.Module):
    """Open-Vocabulary SAM. Construct with random weights; load weights separately."""

    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        self.cfg = cfg
        grid = cfg.embedding_size
        self.backbone = CLIPResNetBackbone(cfg)
        self.neck = SAM2CLIPNeck(cfg, FPN_STRIDES)
        self.pe = PromptEncoder(
            embed_dim=cfg.prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(cfg.image_size, cfg.image_size),
            mask_in_chans=16,
        )
        self.mask_decoder = OVSAMHead(cfg)
        self.fpn_neck = FPN(cfg.backbone_channels, cfg.prompt_dim)

    # ------------------------------------------------------------------ image
    @torch.no_grad()
    def extract_features(self, x: torch.Tensor, keep_backbone: bool = False,
                         after_stage: Optional[Callable[[nn.Module], None]] = None) -> ImageFeatures:
        """Encode one normalised, padded image.

        Args:
            x: (1, 3, S, S) float, SAM/ImageNet-normalised, zero-padded bottom/right.

        The FPN and the neck's input tokens are computed first, so that C2..C4 (~175 MB at
        1024²) are freed before the neck's transformer blocks run. ``after_stage(module)`` is
        called after the backbone, the FPN and the neck (e.g.
        :func:`~ovsam_core.weights.paging.release_mapped_weights`).
        """
        done = after_stage or (lambda module: None)
        feats = list(self.backbone(x))
        done(self.backbone)
        fpn = tuple(self.fpn_neck(feats))
        done(self.fpn_neck)
        tokens = self.neck.tokens(feats)
        c5 = feats[-1]
        kept = tuple(feats) if keep_backbone else None
        del feats
        emb = self.neck.transform(tokens)
        done(self.neck)
        return ImageFeatures(embedding=emb, fpn=fpn, c5=c5, backbone=kept)

    # ------------------------------------------------------------------ prompts
    def embed_prompts(
        self,
        points: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        boxes: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sparse (N, T, D) and dense (N, D, h, w) prompt embeddings.

        Args:
            points: (N, K, 2) x, y in the model frame; point_labels: (N, K) with 1 positive,
                0 negative (None = all positive, as upstream, which forces labels to 1).
            boxes: (N, 4) x0, y0, x1, y1 in the model frame.
        Without a box, a padding point is appended, as SAM and upstream do.
        """
        if points is None and boxes is None:
            raise ValueError("a prompt needs at least one point or a box")
        n = (points if points is not None else boxes).shape[0]
        parts = []
        if points is not None:
            if point_labels is None:
                point_labels = torch.ones(points.shape[:2], dtype=torch.float32, device=points.device)
            parts.append(self.pe._embed_points(points, point_labels.to(points.dtype), pad=boxes is None))
        if boxes is not None:
            parts.append(self.pe._embed_boxes(boxes))
        sparse = torch.cat(parts, dim=1)
        grid = self.cfg.embedding_size
        dense = self.pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, grid, grid)
        return sparse, dense

    @torch.no_grad()
    def decode(
        self,
        features: ImageFeatures,
        points: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        boxes: Optional[torch.Tensor] = None,
        *,
        exact: bool = False,
    ) -> HeadOutput:
        """Segment N prompts of one image (model frame; see :meth:`embed_prompts`).

        ``exact=True`` runs SAM's decoder module by module (the parity reference); the default
        shares the image side across prompts (equal up to float rounding, much faster).
        """
        sparse, dense = self.embed_prompts(points, point_labels, boxes)
        return self.mask_decoder(
            features.embedding, self.pe.get_dense_pe(), sparse, dense, features.fpn, FPN_STRIDES, exact=exact
        )

    # ------------------------------------------------------------------ recognition
    @staticmethod
    def head_logits(out: HeadOutput, classifier: Classifier) -> torch.Tensor:
        """(N, C + 1) logits of the CLIP2SAM head (background last, always 0)."""
        return classify(out.roi_embedding, classifier)

    @torch.no_grad()
    def clip_logits(self, c5: torch.Tensor, boxes: torch.Tensor, classifier: Classifier) -> torch.Tensor:
        """(N, C + 1) logits of the frozen CLIP branch (see :func:`clip_branch_logits`)."""
        return clip_branch_logits(self.backbone.head, c5, boxes, classifier, self.cfg.clip_pool_size)

    @staticmethod
    def mask_valid(out: HeadOutput, grid: int) -> torch.Tensor:
        """(N,) bool: any positive logit after resizing the mask logits to the C5 grid."""
        small = F.interpolate(out.mask_logits, size=(grid, grid), mode="bilinear", align_corners=False)
        return (small > 0).flatten(1).any(dim=1)

    @torch.no_grad()
    def fused_logits(
        self,
        features: ImageFeatures,
        out: HeadOutput,
        classifier: Classifier,
        clip_boxes: torch.Tensor,
        base: torch.Tensor,
        known: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """(N, C + 1) fused log-scores of the head and the frozen-CLIP branch (spec §2.6)."""
        q = self.head_logits(out, classifier)
        c = self.clip_logits(features.c5, clip_boxes, classifier)
        valid = self.mask_valid(out, features.c5.shape[-1])
        return fuse_logits(q, c, base, valid, known)
