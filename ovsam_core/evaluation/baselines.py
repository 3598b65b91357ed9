"""The paper's two combined baselines: SAM segments, CLIP names (Table 1 of the paper).

* **Image-Crop**: SAM's mask -> crop its box from the image, pixels outside the mask set to
  CLIP's mean colour, padded to a square -> CLIP image encoder -> cosine with the text
  classifier.
* **Feature-Crop**: the CLIP trunk runs once on the whole image (long side at the SAM/OVSAM
  frame size, zero-padded); SAM's mask box is RoIAligned on C5 to CLIP's attention-pool grid,
  the features are weighted by the mask (RoIAligned the same way) and pooled by CLIP's
  attention pool -> cosine with the text classifier.

SAM comes from ``segment-anything`` (``vit_h``/``vit_l``/``vit_b`` with the official
checkpoint) or is ``tiny``: a seeded random small SAM of the same classes, for tests. CLIP is
the visual + text tower of a registered ovsam model (``ovsam-lvis``: OpenAI RN50x16;
``ovsam-test``: the tiny random one), so no extra download is needed.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from ..modeling import classify
from ..preprocess import resized_size
from .methods import CHUNK, Method

#: OpenAI CLIP input statistics (0-1 RGB)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_sam(variant: str = "vit_h", checkpoint: Optional[str] = None, image_size: int = 1024,
              seed: int = 0) -> nn.Module:
    """A ``segment_anything.Sam``: official ``vit_*`` (needs ``checkpoint``) or ``tiny``."""
    if variant == "tiny":
        from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

        dim = 32
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            sam = Sam(
                image_encoder=ImageEncoderViT(
                    img_size=image_size, patch_size=16, embed_dim=32, depth=2, num_heads=2, out_chans=dim,
                    qkv_bias=True, norm_layer=functools.partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                    window_size=7, global_attn_indexes=(1,)),
                prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(image_size // 16,) * 2,
                                             input_image_size=(image_size, image_size), mask_in_chans=16),
                mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
                    depth=2, embedding_dim=dim, mlp_dim=64, num_heads=2), transformer_dim=dim,
                    iou_head_depth=3, iou_head_hidden_dim=32),
            )
        return sam.eval()
    if not checkpoint:
        raise ValueError(f"SAM {variant} needs its checkpoint (--sam-checkpoint, e.g. sam_vit_h_4b8939.pth "
                         "from https://dl.fbaipublicfiles.com/segment_anything/)")
    from segment_anything import sam_model_registry

    if variant not in sam_model_registry:
        raise ValueError(f"unknown SAM variant {variant!r}; choose vit_h, vit_l, vit_b or tiny")
    return sam_model_registry[variant](checkpoint=checkpoint).eval()


class SAMCLIPBaseline(Method):
    """Shared part: SAM predicts the masks; subclasses name them with CLIP."""

    kind = "base"

    def __init__(self, sam: nn.Module, clip_visual: nn.Module, classifier: torch.Tensor,
                 clip_input: int, device: str = "cpu", name: Optional[str] = None) -> None:
        from segment_anything import SamPredictor

        self.device = torch.device(device)
        self.sam = sam.to(self.device).eval()
        self.predictor = SamPredictor(self.sam)
        self.clip = clip_visual.to(self.device).eval()
        self.classifier = classifier.to(self.device)
        self.clip_input = clip_input
        self.name = name or self.kind
        self._rgb: Optional[np.ndarray] = None

    def set_image(self, rgb: np.ndarray) -> None:
        self._rgb = np.ascontiguousarray(rgb)
        with torch.inference_mode():
            self.predictor.set_image(self._rgb)

    def _sam_masks(self, boxes=None, points=None) -> np.ndarray:
        pr = self.predictor
        n = len(boxes) if boxes is not None else len(points)
        out = []
        for s in range(0, n, CHUNK):
            sl = slice(s, min(n, s + CHUNK))
            kw = {}
            if boxes is not None:
                b = torch.as_tensor(np.asarray(boxes[sl]), dtype=torch.float32, device=self.device)
                kw["boxes"] = pr.transform.apply_boxes_torch(b, pr.original_size)
                kw["point_coords"] = kw["point_labels"] = None
            else:
                p = torch.as_tensor(np.asarray(points[sl]), dtype=torch.float32, device=self.device)[:, None]
                kw["point_coords"] = pr.transform.apply_coords_torch(p, pr.original_size)
                kw["point_labels"] = torch.ones(p.shape[:2], device=self.device)
            with torch.inference_mode():
                masks, _, _ = pr.predict_torch(multimask_output=False, **kw)
            out.append(masks[:, 0].cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0,) + self._rgb.shape[:2], dtype=bool)

    def _embed(self, masks: np.ndarray, boxes: Optional[np.ndarray]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def predict(self, boxes=None, points=None, clip_boxes=None):
        masks = self._sam_masks(boxes, points)
        with torch.inference_mode():
            emb = self._embed(masks, boxes)
            logits = classify(emb.float(), self.classifier)
            probs = torch.softmax(logits, dim=-1)[:, :-1].cpu().numpy()
        return masks, probs

    def _clip_tensor(self, rgb01: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(CLIP_MEAN, device=rgb01.device).view(-1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=rgb01.device).view(-1, 3, 1, 1)
        return (rgb01 - mean) / std


def _mask_box(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if not len(xs):
        return None
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


class ImageCropBaseline(SAMCLIPBaseline):
    """SAM mask -> masked crop of the image -> CLIP."""

    kind = "image-crop"

    def _embed(self, masks, boxes):
        from PIL import Image

        rgb = self._rgb
        h, w = rgb.shape[:2]
        mean_rgb = np.array([round(c * 255) for c in CLIP_MEAN], dtype=np.uint8)
        crops = []
        for i, m in enumerate(masks):
            box = _mask_box(m)
            if box is None:  # empty mask: fall back to the prompt box, else the whole image
                box = (0, 0, w, h) if boxes is None else tuple(int(round(v)) for v in boxes[i])
                m = np.ones_like(m)
            x0, y0, x1, y1 = box
            x0, y0 = max(0, x0), max(0, y0)
            x1, y1 = max(x0 + 1, min(w, x1)), max(y0 + 1, min(h, y1))
            crop = rgb[y0:y1, x0:x1].copy()
            crop[~m[y0:y1, x0:x1]] = mean_rgb
            side = max(crop.shape[:2])
            sq = np.empty((side, side, 3), dtype=np.uint8)
            sq[:] = mean_rgb
            oy, ox = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
            sq[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop
            im = Image.fromarray(sq).resize((self.clip_input, self.clip_input), Image.Resampling.BICUBIC)
            crops.append(torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255)
        x = self._clip_tensor(torch.stack(crops).to(self.device))
        return self.clip.head(self.clip(x)[-1])


class FeatureCropBaseline(SAMCLIPBaseline):
    """CLIP C5 of the whole image, RoIAligned on SAM's mask box, mask-weighted, attention-pooled."""

    kind = "feature-crop"

    def __init__(self, *args, frame_size: int = 1024, pool_size: int = 12, **kw) -> None:
        super().__init__(*args, **kw)
        self.frame_size = frame_size
        self.pool_size = pool_size
        self._c5: Optional[torch.Tensor] = None
        self._scale = (1.0, 1.0)

    def set_image(self, rgb: np.ndarray) -> None:
        super().set_image(rgb)
        import cv2

        h, w = rgb.shape[:2]
        nh, nw = resized_size(h, w, self.frame_size, "round")
        small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(small).permute(2, 0, 1).float()[None] / 255
        x = F.pad(self._clip_tensor(x), (0, self.frame_size - nw, 0, self.frame_size - nh))
        self._scale = (nw / w, nh / h)
        with torch.inference_mode():
            self._c5 = self.clip(x.to(self.device))[-1]

    def _embed(self, masks, boxes):
        h, w = self._rgb.shape[:2]
        sx, sy = self._scale
        rois, ms = [], []
        for i, m in enumerate(masks):
            box = _mask_box(m)
            if box is None:
                box = (0, 0, w, h) if boxes is None else tuple(float(v) for v in boxes[i])
                m = np.ones_like(m)
            rois.append([0.0, box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy])
            ms.append(m)
        rois_t = torch.tensor(rois, dtype=torch.float32, device=self.device)
        c5 = self._c5
        stride = self.frame_size / c5.shape[-1]
        feats = roi_align(c5, rois_t, (self.pool_size,) * 2, spatial_scale=1 / stride, sampling_ratio=0, aligned=True)
        # the mask in the same RoI grid (mask resized to the frame first)
        mk = torch.from_numpy(np.stack(ms)).float()[:, None].to(self.device)
        nh, nw = round(h * sy), round(w * sx)
        mk = F.interpolate(mk, size=(nh, nw), mode="bilinear", align_corners=False)
        mk = F.pad(mk, (0, self.frame_size - nw, 0, self.frame_size - nh))
        rois_m = rois_t.clone()
        rois_m[:, 0] = torch.arange(len(rois), device=self.device, dtype=torch.float32)
        weights = roi_align(mk, rois_m, (self.pool_size,) * 2, spatial_scale=1.0, sampling_ratio=0, aligned=True)
        return self.clip.head(feats * weights)
