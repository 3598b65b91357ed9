"""CLIP2SAM head: SAM's mask decoder plus a label token and RoI recognition.

Upstream ``OVSAMHead``. Module names mirror the checkpoint keys: ``mask_decoder`` (SAM's
``MaskDecoder`` with one mask token and no IoU token/head), ``label_token``, ``label_mlp``
and ``roi_conv``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from segment_anything.modeling.mask_decoder import MLP, MaskDecoder
from segment_anything.modeling.transformer import TwoWayTransformer

from ..config import ArchConfig
from .fast_decoder import predict_masks_shared
from .roi import mask_to_box, multilevel_roi_align

#: Upstream stores ``logit_scale = 4.6052`` and multiplies by its exp (= 100.00296 in float32).
LOGIT_SCALE = 4.6052
LOGIT_SCALE_EXP = torch.tensor(LOGIT_SCALE, dtype=torch.float32).exp()


class RoIConv(nn.Module):
    """1x1 conv (no bias) + ReLU under the key ``0.conv`` (mmcv ConvModule layout)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


@dataclass(frozen=True)
class HeadOutput:
    """Per-prompt outputs of the head.

    Attributes:
        mask_logits: (N, 1, S/4, S/4) low-resolution mask logits over the padded model frame.
        roi_embedding: (N, clip_embed_dim) pooled RoI feature (un-normalised) used to classify.
        roi_boxes: (N, 4) the mask-derived RoI boxes in the model frame (x0, y0, x1, y1).
    """

    mask_logits: torch.Tensor
    roi_embedding: torch.Tensor
    roi_boxes: torch.Tensor


@dataclass(frozen=True)
class PackedClassifier:
    """A (C, P, D) classifier without its synonym padding, for fast repeated inference.

    Classes with fewer than P synonyms are padded with copies of their first prototype; the
    max over synonyms does not need them. ImageNet-21k (19,167 classes, P = 15) shrinks from
    287,505 to 36,260 rows.

    Attributes:
        prototypes: (S, D) the distinct prototypes, grouped by class in class order.
        owner: (S,) int64 class index of each prototype.
        num_classes: C.
    """

    prototypes: torch.Tensor
    owner: torch.Tensor
    num_classes: int

    @classmethod
    def pack(cls, classifier: torch.Tensor) -> "PackedClassifier":
        """Drop every synonym row equal to its class's first row (the padding)."""
        c, p, _ = classifier.shape
        keep = (classifier != classifier[:, :1]).any(dim=-1)
        keep[:, 0] = True
        owner = torch.arange(c, device=classifier.device)[:, None].expand(c, p)[keep]
        return cls(classifier[keep].contiguous(), owner.contiguous(), c)


def classify(embedding: torch.Tensor, classifier: Union[torch.Tensor, PackedClassifier]) -> torch.Tensor:
    """Open-vocabulary logits: ``exp(4.6052) * max_P cos(embedding, classifier[c, p])``.

    Args:
        embedding: (N, D) region embeddings (not necessarily normalised).
        classifier: (C, P, D) L2-normalised class prototypes (P synonyms per class), or the
            same as a :class:`PackedClassifier`.
    Returns:
        (N, C + 1) logits; the last column is the background (upstream: cosine with a zero
        prototype), always exactly 0.
    """
    x = F.normalize(embedding, dim=-1)  # (N, D)
    if isinstance(classifier, PackedClassifier):
        sim = x @ classifier.prototypes.t()  # (N, S)
        n = sim.shape[0]
        out = sim.new_full((n, classifier.num_classes), float("-inf"))
        sim = out.scatter_reduce_(1, classifier.owner.expand(n, -1), sim, "amax")
    else:
        sim = torch.einsum("nd,kpd->nkp", x, classifier).amax(dim=-1)  # (N, C)
    logits = LOGIT_SCALE_EXP.to(sim.device, sim.dtype) * sim
    return torch.cat([logits, logits.new_zeros((logits.shape[0], 1))], dim=1)


class OVSAMHead(nn.Module):
    """Mask decoder that segments each prompt and pools a recognition feature for it."""

    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        dim = cfg.prompt_dim
        decoder = MaskDecoder(
            transformer_dim=dim,
            transformer=TwoWayTransformer(
                depth=cfg.decoder_depth, embedding_dim=dim,
                mlp_dim=cfg.decoder_mlp_dim, num_heads=cfg.decoder_heads,
            ),
            num_multimask_outputs=0,
        )
        # Upstream drops the IoU token and head; the label token takes the IoU token's slot.
        del decoder.iou_token
        del decoder.iou_prediction_head
        self.mask_decoder = decoder
        self.label_token = nn.Embedding(1, dim)
        # Kept for checkpoint compatibility: upstream multiplies its output by 0 (quirk Q3).
        self.label_mlp = MLP(dim, dim, cfg.clip_embed_dim, 3)
        self.roi_conv = nn.Sequential(RoIConv(dim, cfg.clip_embed_dim))
        self.roi_size = cfg.roi_size
        self.finest_scale = cfg.finest_scale

    def predict_masks(
        self,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
    ) -> torch.Tensor:
        """(N, 1, 4h, 4w) low-resolution mask logits over the padded model frame.

        Args:
            image_embedding: (1, D, h, w) SAM2CLIP output; image_pe: (1, D, h, w).
            sparse: (N, T, D) prompt tokens; dense: (N, D, h, w).
        """
        dec = self.mask_decoder
        n = sparse.shape[0]
        tokens = torch.cat([self.label_token.weight, dec.mask_tokens.weight], dim=0)
        tokens = torch.cat([tokens[None].expand(n, -1, -1), sparse], dim=1)
        src = image_embedding.expand(n, -1, -1, -1) + dense
        pos = image_pe.expand(n, -1, -1, -1)
        c, h, w = src.shape[1:]
        hs, src = dec.transformer(src, pos, tokens)
        mask_token = hs[:, 1, :]
        up = dec.output_upscaling(src.transpose(1, 2).reshape(-1, c, h, w))
        hyper = dec.output_hypernetworks_mlps[0](mask_token)[:, None]  # (N, 1, c')
        c2, h2, w2 = up.shape[1:]
        return (hyper @ up.reshape(-1, c2, h2 * w2)).reshape(-1, 1, h2, w2)

    def recognize(
        self,
        masks: torch.Tensor,
        image_size: int,
        fpn_feats: Sequence[torch.Tensor],
        fpn_strides: Sequence[int] = (4, 8, 16, 32),
        static: bool = False,
    ) -> HeadOutput:
        """RoI of each predicted mask (its tight box, quirk Q4) -> pooled recognition feature.

        ``static`` selects the export-friendly RoIAlign (see :func:`multilevel_roi_align`).
        """
        scale = image_size / masks.shape[-1]  # mask grid -> model frame (4 upstream)
        boxes = mask_to_box(torch.sigmoid(masks[:, 0]) > 0.5) * scale
        roi = multilevel_roi_align(fpn_feats, boxes, self.roi_size, fpn_strides, self.finest_scale, static)
        emb = self.roi_conv(roi).mean(-1).mean(-1)
        return HeadOutput(mask_logits=masks, roi_embedding=emb, roi_boxes=boxes)

    def forward(
        self,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        fpn_feats: Sequence[torch.Tensor],
        fpn_strides: Sequence[int] = (4, 8, 16, 32),
        exact: bool = True,
    ) -> HeadOutput:
        """Segment and pool N prompts of one image (see :meth:`predict_masks`, :meth:`recognize`).

        ``exact=False`` (inference only) decodes with the image side shared across prompts
        (:func:`~ovsam_core.modeling.fast_decoder.predict_masks_shared`): the same function up to
        float rounding, several times faster for many prompts. It needs the same dense
        embedding for every prompt, which holds for point and box prompts.
        """
        if exact or torch.is_grad_enabled():
            masks = self.predict_masks(image_embedding, image_pe, sparse, dense)
        else:
            masks = predict_masks_shared(self, image_embedding, image_pe, sparse, dense)
        return self.recognize(masks, image_embedding.shape[-1] * 16, fpn_feats, fpn_strides)
