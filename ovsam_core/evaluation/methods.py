"""Methods under evaluation: anything that segments and names box / point prompts.

A method gets an image once (:meth:`Method.set_image`), then batches of prompts in
**original-image pixels**, and returns masks at the original resolution and class
probabilities over the evaluation vocabulary. :class:`OVSAMMethod` wraps any registered OVSAM
model (evaluation path B of the spec: cv2 resize, head or fused recognition);
:mod:`.baselines` holds the paper's SAM + CLIP baselines.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from ..preprocess import FrameTransform, normalize_and_pad, resize_cv2, upsample_masks

#: prompts decoded together (bounds the decoder's per-prompt image copies)
CHUNK = 16


class Method:
    """Interface of an evaluated method."""

    name: str = "method"

    def set_image(self, rgb: np.ndarray) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, boxes: Optional[np.ndarray] = None, points: Optional[np.ndarray] = None,
                clip_boxes: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Masks (N, H, W) bool and class probabilities (N, C) for N prompts.

        Args:
            boxes: (N, 4) ``x0, y0, x1, y1`` or None; points: (N, 2) ``x, y`` (one positive
                point per prompt) or None. Exactly one of them is given.
            clip_boxes: (N, 4) boxes for a method's frozen-CLIP branch (OVSAM ``fused`` mode),
                in the frame that method expects (see :class:`OVSAMMethod`).
        """
        raise NotImplementedError  # pragma: no cover


class OVSAMMethod(Method):
    """A registered OVSAM model, evaluated as upstream's evaluation code does.

    Pre-processing: cv2 bilinear resize of the long side to the model size (rounded), SAM
    normalisation, zero padding; masks: bilinear to the frame, crop, bilinear to the original
    size, ``sigmoid > 0.5``. Recognition ``head`` (CLIP2SAM head on the mask's RoI) or
    ``fused`` (+ frozen CLIP on ``clip_boxes``, geometric-mean fusion with the ``base`` split).

    Args:
        loaded: a :class:`~ovsam_core.weights.loader.LoadedModel`.
        classifier: (C, P, D) text classifier of the evaluation vocabulary.
        mode: ``head`` or ``fused``.
        base / known: (C,) bool masks for ``fused`` (base classes; classes that are base or novel).
        clip_box_frame: ``original`` (upstream quirk Q1: boxes in original-image pixels applied
            to the model-frame feature map, the paper's numbers) or ``model`` (boxes mapped into
            the model frame, the product behaviour).
    """

    def __init__(self, loaded, classifier: torch.Tensor, mode: str = "head", base: Optional[torch.Tensor] = None,
                 known: Optional[torch.Tensor] = None, clip_box_frame: str = "original",
                 device: str = "cpu", name: Optional[str] = None) -> None:
        if mode not in ("head", "fused"):
            raise ValueError(f"mode must be head or fused, got {mode!r}")
        if mode == "fused" and base is None:
            raise ValueError("fused mode needs the base-class mask of the vocabulary")
        if clip_box_frame not in ("original", "model"):
            raise ValueError("clip_box_frame must be original or model")
        self.loaded = loaded
        self.net = loaded.model.to(device).eval()
        self.device = torch.device(device)
        self.classifier = classifier.to(self.device)
        self.mode = mode
        self.base = base.to(self.device) if base is not None else None
        self.known = known.to(self.device) if known is not None else None
        self.clip_box_frame = clip_box_frame
        self.size = self.net.cfg.image_size
        self.name = name or loaded.spec.name
        self._feats = None
        self._frame: Optional[FrameTransform] = None

    def set_image(self, rgb: np.ndarray) -> None:
        resized = resize_cv2(rgb, self.size)
        self._frame = FrameTransform(rgb.shape[:2], resized.shape[:2], self.size)
        with torch.inference_mode():
            self._feats = self.net.extract_features(normalize_and_pad(resized, self.size).to(self.device))

    def predict(self, boxes=None, points=None, clip_boxes=None):
        assert self._frame is not None, "call set_image first"
        fr, net = self._frame, self.net
        n = len(boxes) if boxes is not None else len(points)
        h, w = fr.orig_hw
        masks = np.zeros((n, h, w), dtype=bool)
        probs = np.zeros((n, self.classifier.shape[0]), dtype=np.float32)
        for s in range(0, n, CHUNK):
            sl = slice(s, min(n, s + CHUNK))
            b = p = None
            if boxes is not None:
                b = fr.to_model(torch.as_tensor(np.asarray(boxes[sl]), dtype=torch.float32)).to(self.device)
            if points is not None:
                p = fr.to_model(torch.as_tensor(np.asarray(points[sl]), dtype=torch.float32))[:, None].to(self.device)
            with torch.inference_mode():
                out = net.decode(self._feats, points=p, boxes=b)
                if self.mode == "head":
                    logits = net.head_logits(out, self.classifier)
                else:
                    if clip_boxes is not None:
                        cb = torch.as_tensor(np.asarray(clip_boxes[sl]), dtype=torch.float32)
                        if self.clip_box_frame == "model":
                            cb = fr.to_model(cb)
                        cb = cb.to(self.device)
                    else:
                        cb = b if b is not None else out.roi_boxes
                    logits = net.fused_logits(self._feats, out, self.classifier, cb, self.base, self.known)
                probs[sl] = torch.softmax(logits.float(), dim=-1)[:, :-1].cpu().numpy()
                up = upsample_masks(out.mask_logits.float(), fr)
                masks[sl] = (torch.sigmoid(up) > 0.5).cpu().numpy()
        return masks, probs
