"""CLIP2SAM training (``ovsam train clip2sam CONFIG``): the FPN and the recognising mask decoder
learn on COCO-format instances, with the CLIP backbone, SAM2CLIP neck and prompt encoder frozen
(spec §5.2).

Per image: 40 prompts (GT boxes and single mask points, :func:`~.data.sample_prompts`) go
through the decoder; masks are supervised by BCE + dice on uncertainty-sampled points, and the
class by cross-entropy over the text classifier (background weight 0.1), with the RoI taken
from the **GT box** (upstream ``gen_box=False`` in training). The decoder forward is our own
trainable re-statement of ``OVSAMHead.predict_masks`` (which the inference path runs under
``torch.no_grad``), using the same sub-modules; it also returns the label token, which upstream
feeds through ``label_mlp`` multiplied by 0 (quirk Q3, reproduced: ``label_mlp`` gets zero
gradients and AdamW's decoupled weight decay).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch import nn
from torchvision.ops import roi_align

from ..modeling import FPN_STRIDES, OVSAM, classify
from ..modeling.roi import assign_levels, mask_to_box
from ..text.classifier import build_classifier
from ..text.encoder import TextEncoder
from .config import Clip2SamConfig
from .data import Clip2SamDataset, CocoInstances, collate
from .losses import LossParts, accuracy, clip2sam_losses, uncertain_points
from .modelinit import (build_model, calibrate_batchnorm, freeze, load_sam_decoder, load_trainable_state,
                        neck_pos_embed_from_prompt_encoder, reinit_clip2sam, set_train_mode, trainable_state)

log = logging.getLogger(__name__)


def decode_train(model: OVSAM, image_embeddings: torch.Tensor, sparse: torch.Tensor,
                 dense: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Trainable decoder forward: (N, 1, 4h, 4w) mask logits and the (N, D) label-token output.

    Args:
        image_embeddings: (N, D, h, w) the image embedding of each prompt's image.
        sparse: (N, T, D); dense: (N, D, h, w).
    """
    head = model.mask_decoder
    dec = head.mask_decoder
    n = sparse.shape[0]
    tokens = torch.cat([head.label_token.weight, dec.mask_tokens.weight], dim=0)
    tokens = torch.cat([tokens[None].expand(n, -1, -1).to(sparse.dtype), sparse], dim=1)
    src = image_embeddings + dense
    pos = model.pe.get_dense_pe().expand(n, -1, -1, -1)
    c, h, w = src.shape[1:]
    hs, src = dec.transformer(src, pos, tokens)
    up = dec.output_upscaling(src.transpose(1, 2).reshape(n, c, h, w))
    hyper = dec.output_hypernetworks_mlps[0](hs[:, 1, :])[:, None]
    c2, h2, w2 = up.shape[1:]
    masks = (hyper @ up.reshape(n, c2, h2 * w2)).reshape(n, 1, h2, w2)
    return masks, hs[:, 0, :]


def roi_align_batched(feats: Sequence[torch.Tensor], boxes: torch.Tensor, batch_index: torch.Tensor,
                      output_size: int, strides: Sequence[int] = FPN_STRIDES,
                      finest_scale: float = 56.0) -> torch.Tensor:
    """Multi-level RoIAlign (mmdet ``SingleRoIExtractor`` rule) over a batch of images."""
    rois = torch.cat([batch_index[:, None].to(boxes.dtype), boxes], dim=1)
    levels = assign_levels(boxes, len(feats), finest_scale)
    out = feats[0].new_zeros((boxes.shape[0], feats[0].shape[1], output_size, output_size))
    for lvl, (feat, stride) in enumerate(zip(feats, strides)):
        sel = torch.nonzero(levels == lvl).flatten()
        if sel.numel():
            pooled = roi_align(feat, rois[sel].to(feat.dtype), (output_size, output_size),
                               spatial_scale=1.0 / stride, sampling_ratio=0, aligned=True)
            out = out.index_put((sel,), pooled.to(out.dtype))
        else:
            # a level without RoI stays in the graph (zero gradient), so that DDP finds a
            # gradient for every FPN conv (as with find_unused_parameters, without its cost)
            out = out + 0.0 * feat.sum().to(out.dtype)
    return out


class Clip2SamModule(nn.Module):
    """OVSAM + the text classifier; ``forward(batch)`` returns :class:`LossParts`."""

    def __init__(self, model: OVSAM, classifier: torch.Tensor, trainable: Sequence[str], loss_cfg) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("classifier", classifier.float(), persistent=False)
        self.trainable = tuple(trainable)
        self.loss_cfg = loss_cfg

    def _frozen(self, name: str) -> bool:
        return not any(t == name or t.startswith(name + ".") or name.startswith(t + ".") for t in self.trainable)

    def train(self, mode: bool = True) -> "Clip2SamModule":
        super().train(mode)
        if mode:
            set_train_mode(self.model, self.trainable)
        return self

    def prompts(self, batch: Dict[str, Any], device: torch.device):
        """Sparse/dense embeddings and per-prompt targets for the whole batch.

        Prompt order per image: its box prompts, then its point prompts (as upstream)."""
        m = self.model
        boxes, points, img_idx, inst, labels, gt_boxes, box_rows = [], [], [], [], [], [], []
        off = 0
        for b, (is_box, ins, pts, bx, lab) in enumerate(zip(batch["is_box"], batch["inst"], batch["points"],
                                                            batch["boxes"], batch["labels"])):
            order = torch.cat([torch.nonzero(is_box).flatten(), torch.nonzero(~is_box).flatten()])
            ins = ins[order]
            isb = is_box[order]
            img_idx.append(torch.full((len(ins),), b, dtype=torch.long))
            inst.append(ins + off)
            labels.append(lab[ins])
            gt_boxes.append(bx[ins])
            boxes.append(bx[ins][isb])
            points.append(pts[order][~isb])
            box_rows.append(isb)
            off += len(bx)
        # background point prompts (data.background_prompts): after all object prompts, class
        # "background" (index C), target mask = the all-zero row appended to the GT masks
        n_cls = self.classifier.shape[0]
        bg_pts = batch.get("bg_points") or [torch.zeros(0, 2)] * len(batch["inst"])
        for b, bp in enumerate(bg_pts):
            k = len(bp)
            img_idx.append(torch.full((k,), b, dtype=torch.long))
            inst.append(torch.full((k,), off, dtype=torch.long))
            labels.append(torch.full((k,), n_cls, dtype=torch.long))
            gt_boxes.append(torch.zeros(k, 4))
            points.append(bp)
            box_rows.append(torch.zeros(k, dtype=torch.bool))
        is_box = torch.cat(box_rows).to(device)
        boxes_t = torch.cat(boxes).to(device)
        points_t = torch.cat(points).to(device)
        n = is_box.numel()
        grad_pe = not self._frozen("pe")
        with torch.set_grad_enabled(grad_pe and torch.is_grad_enabled()):
            d = m.cfg.prompt_dim
            sparse = torch.zeros(n, 2, d, device=device)
            if boxes_t.numel():
                pe_box = m.pe._embed_boxes(boxes_t).to(sparse.dtype)      # autocast may return fp16
                sparse = sparse.index_put((torch.nonzero(is_box).flatten(),), pe_box)
            if points_t.numel():
                pe_pts = m.pe._embed_points(points_t[:, None], torch.ones(len(points_t), 1, device=device), pad=True)
                sparse = sparse.index_put((torch.nonzero(~is_box).flatten(),), pe_pts.to(sparse.dtype))
            g = m.cfg.embedding_size
            dense = m.pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, g, g)
        labels_t = torch.cat(labels).to(device)
        return {
            "sparse": sparse, "dense": dense,
            "img_idx": torch.cat(img_idx).to(device), "inst": torch.cat(inst).to(device),
            "labels": labels_t, "gt_boxes": torch.cat(gt_boxes).to(device), "is_bg": labels_t == n_cls,
        }

    def forward(self, batch: Dict[str, Any]) -> Tuple[LossParts, Dict[str, torch.Tensor]]:
        m = self.model
        device = self.classifier.device
        x = batch["image"].to(device, non_blocking=True)
        with torch.set_grad_enabled(not self._frozen("backbone") and torch.is_grad_enabled()):
            feats = m.backbone(x)
        with torch.set_grad_enabled(not self._frozen("neck") and torch.is_grad_enabled()):
            emb = m.neck(feats)
        fpn = m.fpn_neck(feats)
        p = self.prompts(batch, device)
        n = p["labels"].numel()
        if n == 0:  # no instance in any image of this batch: a zero loss that reaches every parameter
            zero = sum(q.sum() for q in self.parameters() if q.requires_grad) * 0.0
            one = torch.ones((), device=device)
            return LossParts(sums={k: zero for k in ("cls", "mask", "dice")},
                             counts={k: 0.0 * one for k in ("cls", "mask", "dice")}), {
                "acc": torch.zeros((), device=device), "prompts": torch.zeros((), device=device)}
        masks, label_query = decode_train(m, emb[p["img_idx"]], p["sparse"], p["dense"])
        head = m.mask_decoder
        rois = p["gt_boxes"]
        if p["is_bg"].any():
            # a background prompt has no GT box: pool what inference pools, the predicted mask's
            # tight box (all zeros for an empty mask), so the background column learns from it
            scale = m.cfg.image_size / masks.shape[-1]
            pred_boxes = mask_to_box(masks[:, 0].detach() > 0) * scale
            rois = torch.where(p["is_bg"][:, None], pred_boxes.to(rois.dtype), rois)
        roi = roi_align_batched(fpn, rois, p["img_idx"], self.loss_cfg.roi_size,
                                FPN_STRIDES, head.finest_scale)
        roi_emb = head.roi_conv(roi).mean(-1).mean(-1)
        # upstream: roi_feats + 0 * label_mlp(label_query) (quirk Q3)
        roi_emb = roi_emb + 0.0 * head.label_mlp(label_query)
        logits = classify(roi_emb.float(), self.classifier)
        # random points: one CPU generator per image (deterministic whatever the batch split)
        coords = []
        for b, seed in enumerate(batch["seed"]):
            k = int((p["img_idx"] == b).sum())
            gen = torch.Generator().manual_seed(int(seed))
            coords.append(uncertain_points(masks[p["img_idx"] == b, 0], self.loss_cfg.num_points,
                                           self.loss_cfg.oversample_ratio, self.loss_cfg.importance_sample_ratio,
                                           gen) if k else masks.new_zeros(0, self.loss_cfg.num_points, 2))
        coords_t = torch.cat(coords).to(device)
        gt_masks = torch.cat(batch["masks"]).to(device, non_blocking=True)
        is_bg = p["is_bg"]
        if is_bg.any():
            gt_masks = torch.cat([gt_masks, gt_masks.new_zeros((1, *gt_masks.shape[1:]))])
        parts = clip2sam_losses(logits, p["labels"], masks[:, 0], gt_masks, p["inst"], coords_t,
                                self.loss_cfg.bg_weight)
        fg = ~is_bg
        stats = {"acc": accuracy(logits.detach()[fg], p["labels"][fg]), "prompts": torch.tensor(float(n))}
        if is_bg.any():
            stats["bg_acc"] = (logits.detach()[is_bg].argmax(-1) == logits.shape[1] - 1).float().mean()
        return parts, stats


def build_classifier_for(text: TextEncoder, class_names: Sequence[str], progress: bool) -> torch.Tensor:
    """The (C, P, D) classifier of the training classes (upstream recipe, frozen text tower)."""
    return build_classifier(text, list(class_names), progress=progress)


def prepare_synthetic_data(cfg: Clip2SamConfig, info=None) -> None:
    """Write the synthetic training split of ``cfg.data.synthetic`` (rank 0, once per settings)
    and point ``cfg.data.images`` / ``cfg.data.annotations`` at it; no-op when it is off."""
    import dataclasses
    import json

    from ..synthetic import CATEGORIES, generate_split
    from .distributed import barrier

    syn = cfg.data.synthetic
    if syn.num_images <= 0:
        return
    root = Path(syn.dir) if syn.dir else Path(cfg.run.work_dir) / "synthetic"
    params = {k: v for k, v in dataclasses.asdict(syn).items() if k != "dir"}
    params["image_size"] = cfg.data.image_size
    stamp = root / "synthetic.json"
    if (info is None or info.is_main) and not (stamp.is_file() and json.loads(stamp.read_text()) == params):
        base = [c.name for c in CATEGORIES if c.split == "base"]
        log.info("writing %d synthetic training images to %s", syn.num_images, root)
        generate_split(root, "train", syn.num_images, syn.seed, image_size=cfg.data.image_size,
                       classes=base if syn.train_base_only else None, min_objects=syn.min_objects,
                       max_objects=syn.max_objects, min_radius=syn.min_radius, max_radius=syn.max_radius)
        stamp.write_text(json.dumps(params, sort_keys=True))
    if info is not None:
        barrier(info)
    cfg.data.images = str(root / "images" / "train")
    cfg.data.annotations = str(root / "annotations" / "instances_train.json")


class Clip2SamTask:
    """Everything the loop needs for CLIP2SAM training."""

    name = "clip2sam"

    def __init__(self, cfg: Clip2SamConfig, device: torch.device, progress: bool = True, info=None) -> None:
        self.cfg = cfg
        roles = ("clip", "prompt_encoder", "neck")
        model, text, spec = build_model(cfg.model, roles, progress=progress)
        if cfg.model.sam_checkpoint:
            load_sam_decoder(model, cfg.model.sam_checkpoint)
        if cfg.model.reinit:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.run.seed)
                reinit_clip2sam(model)
        if cfg.data.image_size != model.cfg.image_size:
            raise ValueError(f"data.image_size {cfg.data.image_size} differs from the architecture's "
                             f"image_size {model.cfg.image_size}")
        self.spec = spec
        self.text_encoder = text
        prepare_synthetic_data(cfg, info)
        inst = CocoInstances(cfg.data.annotations, cfg.data.images, cfg.data.vocabulary, cfg.data.novel_classes)
        self.instances = inst
        self.class_names = inst.class_names
        if cfg.data.train_classes == "base":
            inst.filter_classes(inst.base_mask())
        else:
            inst.filter_classes(torch.ones(len(inst.class_names), dtype=torch.bool))
        if cfg.data.max_images:
            inst.records = inst.records[:cfg.data.max_images]
        if not inst.records:
            raise ValueError(f"no training image left in {cfg.data.annotations} after the class filter")
        text.eval().requires_grad_(False)
        classifier = build_classifier_for(text, self.class_names, progress)
        if cfg.model.neck_pos_embed == "prompt_encoder":
            neck_pos_embed_from_prompt_encoder(model)
        if cfg.model.calibrate_bn:
            plain = Clip2SamDataset(inst, cfg.data.image_size, lsj_aug=False, num_prompts=1)
            n = min(cfg.model.calibrate_bn, len(plain))
            calibrate_batchnorm(model.backbone, [plain[i]["image"] for i in range(n)])
        self.trainable_names = freeze(model, cfg.model.trainable)
        self.module = Clip2SamModule(model, classifier, cfg.model.trainable, cfg.loss).to(device)
        self.dataset = Clip2SamDataset(
            inst, cfg.data.image_size, seed=cfg.run.seed, lsj_aug=cfg.data.lsj, flip_prob=cfg.data.flip_prob,
            scale_range=tuple(cfg.data.scale_range), min_mask_area=cfg.data.min_mask_area,
            num_prompts=cfg.data.num_prompts, background_prompts=cfg.data.background_prompts,
            background_margin=cfg.data.background_margin, box_fraction=cfg.data.box_fraction)
        self.collate = collate
        self.loss_weights = {"cls": cfg.loss.cls_weight, "mask": cfg.loss.mask_weight, "dice": cfg.loss.dice_weight}

    @property
    def model(self) -> OVSAM:
        return self.module.model

    def trainable_state(self) -> Dict[str, torch.Tensor]:
        return trainable_state(self.model, self.cfg.model.trainable)

    def load_trainable_state(self, sd: Dict[str, torch.Tensor]) -> None:
        load_trainable_state(self.model, self.cfg.model.trainable, sd)

    def export(self, out_dir: Path) -> List[Path]:
        from .export import export_weights

        name = self.cfg.export.model or self.spec.name
        return export_weights(self.model, name, out_dir, trained=self.cfg.model.trainable,
                              text_encoder=self.text_encoder)


def train_clip2sam(cfg: Clip2SamConfig) -> Dict[str, Any]:
    """Run CLIP2SAM training (one process, or one rank under torchrun)."""
    from .loop import run_training

    return run_training(cfg, Clip2SamTask)
