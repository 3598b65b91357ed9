"""Prompt-free modes: segment and name everything on an image, and find objects by text.

Both run the OVSAM decoder on a grid of single-point prompts from **one** image embedding (per
crop), then keep the masks that are good objects and name them with the vocabulary:

1. **Grid**: ``points_per_side`` x ``points_per_side`` points over the image
   (:func:`segment_anything.utils.amg.build_all_layer_point_grids`), optionally also over
   overlapping crops (``crop_n_layers``, :func:`~segment_anything.utils.amg.generate_crop_boxes`)
   for large images; each crop is embedded once.
2. **Decode** in batches of ``points_per_batch`` prompts: low-resolution mask logits
   (stride 4 of the model frame) and the RoI embedding of each mask.
3. **Filter at low resolution** (no upsampling yet): drop empty masks and masks whose
   *stability* is below ``stability_thresh``; **classify only the survivors**; drop those whose
   class probability is below ``min_score``.
4. **De-duplicate**: box NMS (:func:`torchvision.ops.batched_nms`, class-agnostic) on the rank
   score, then mask-overlap suppression on the final masks (pycocotools IoU on RLE).
5. **Upsample only the survivors** to the original image, remove small holes and islands
   (:func:`segment_anything.utils.amg.remove_small_regions`) and keep each mask as COCO RLE,
   so memory does not grow with the number of candidates.

The quality score. The OVSAM decoder has no IoU head and no multimask output, so SAM's
``pred_iou_thresh`` has no counterpart. Each object instead carries:

* ``stability``: SAM's stability score of the low-res logits (IoU of the masks at logit
  +``stability_offset`` and -``stability_offset``): crisp objects score near 1, ambiguous
  blobs low;
* ``score`` (the label's probability): softmax over the vocabulary **and the background
  column** (logit 0), background excluded; ``background`` is the background column's
  probability. A model trained with background prompts (``data.background_prompts`` in
  ``ovsam train clip2sam``; ``ovsam-shapes`` is) learns an objectness signal there: prompts on
  background give an empty mask and a high ``background``; the official checkpoints never saw
  such prompts, so for them the stability score carries most of the filtering;
* ``rank = score * stability``: the order of the results and of NMS.

Find mode (:func:`find`) runs the same pipeline with the queries **plus a background
vocabulary** (default: the model's own, e.g. LVIS), so that a query only wins a mask that looks
more like it than like anything else, and keeps the objects whose top-1 class is a query.

Coordinates in and out are original-image pixels (x right, y down).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .images import LoadedImage, load_image
from .modeling.ovsam_head import HeadOutput
from .modeling.roi import mask_to_box
from .preprocess import upsample_masks

if TYPE_CHECKING:  # pragma: no cover
    from .embedding import ImageEmbedding
    from .predictor import Predictor
    from .vocabulary import VocabSource


@dataclass(frozen=True)
class EverythingOptions:
    """Settings of :func:`segment_everything` (SAM's automatic-mask-generator names where they
    mean the same).

    Attributes:
        points_per_side: grid points along each side of the image (and of each crop).
        points_per_batch: prompts decoded at once (bounds the low-res masks held in memory).
        min_score: minimum probability of the object's label (background column included).
        stability_thresh: minimum stability score of the low-res mask logits.
        stability_offset: logit offset of the stability score (SAM: 1.0).
        box_nms_thresh: box IoU above which the lower-ranked mask is dropped.
        mask_nms_thresh: mask IoU above which the lower-ranked mask is dropped.
        containment_thresh: a mask lying inside a higher-ranked mask **with the same label** by
            at least this fraction of its area is dropped (a part found twice); 1.0 = off.
        min_area_ratio: masks smaller than this fraction of the image area are dropped.
        min_region_area: holes and islands smaller than this many pixels are removed from
            each final mask (0 = off).
        crop_n_layers: 0 = the whole image only; n > 0 also runs 2x2, 4x4, ... overlapping crops
            (each embedded once), for large images with small objects.
        crop_overlap_ratio: overlap of neighbouring crops (fraction of the crop size).
        crop_n_points_downscale_factor: points per side divided by this factor per crop layer.
        top_k: alternatives per object.
        max_objects: keep at most this many objects (best rank first; None = all).
    """

    points_per_side: int = 32
    points_per_batch: int = 128
    min_score: float = 0.5
    stability_thresh: float = 0.85
    stability_offset: float = 1.0
    box_nms_thresh: float = 0.7
    mask_nms_thresh: float = 0.6
    containment_thresh: float = 0.9
    min_area_ratio: float = 0.0002
    min_region_area: int = 25
    crop_n_layers: int = 0
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    top_k: int = 5
    max_objects: Optional[int] = None

    def validated(self) -> "EverythingOptions":
        """These options, or ``ValueError`` naming the bad value and the valid range."""
        checks = [
            ("points_per_side", 1 <= self.points_per_side <= 256, "an integer in [1, 256]"),
            ("points_per_batch", self.points_per_batch >= 1, ">= 1"),
            ("min_score", 0.0 <= self.min_score <= 1.0, "in [0, 1]"),
            ("stability_thresh", 0.0 <= self.stability_thresh <= 1.0, "in [0, 1]"),
            ("stability_offset", self.stability_offset > 0, "> 0"),
            ("box_nms_thresh", 0.0 < self.box_nms_thresh <= 1.0, "in (0, 1]"),
            ("mask_nms_thresh", 0.0 < self.mask_nms_thresh <= 1.0, "in (0, 1]"),
            ("containment_thresh", 0.0 < self.containment_thresh <= 1.0, "in (0, 1]"),
            ("min_area_ratio", 0.0 <= self.min_area_ratio < 1.0, "in [0, 1)"),
            ("min_region_area", self.min_region_area >= 0, ">= 0"),
            ("crop_n_layers", 0 <= self.crop_n_layers <= 4, "an integer in [0, 4]"),
            ("crop_overlap_ratio", 0.0 <= self.crop_overlap_ratio < 1.0, "in [0, 1)"),
            ("crop_n_points_downscale_factor", self.crop_n_points_downscale_factor >= 1, ">= 1"),
            ("top_k", self.top_k >= 1, ">= 1"),
            ("max_objects", self.max_objects is None or self.max_objects >= 1, ">= 1 or None"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise ValueError(f"{name} must be {want}, got {getattr(self, name)!r}")
        return self


@dataclass(frozen=True)
class AutoObject:
    """One object found without a prompt.

    Attributes:
        rle: COCO compressed RLE ``{"size": [H, W], "counts": str}`` at the original size.
        label / label_index / score: the top-1 class (display name, vocabulary index, probability).
        top_k: ((label, score), ...) best first; ``top_k_indices`` their vocabulary indices.
        bbox_xyxy: tight box of the mask (x0, y0, x1, y1), exclusive end, pixels.
        area: mask pixels.
        point: the grid point (x, y) that produced the mask, original pixels.
        quality: ``stability``, ``background`` (probability of the background column) and
            ``rank`` (= score * stability, the order of the results).
        crop_box: the crop (x0, y0, x1, y1) whose embedding produced it (the whole image at
            crop layer 0).
        query: find mode: the query this object matched (None in everything mode).
        label_path: ancestors of the label in a hierarchical vocabulary (nearest first).
    """

    rle: Dict[str, Any]
    label: str
    label_index: int
    score: float
    top_k: Tuple[Tuple[str, float], ...]
    bbox_xyxy: Tuple[int, int, int, int]
    area: int
    point: Tuple[float, float]
    quality: Dict[str, float]
    crop_box: Tuple[int, int, int, int]
    query: Optional[str] = None
    label_path: Tuple[str, ...] = ()
    top_k_indices: Tuple[int, ...] = ()

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool, decoded from :attr:`rle` on each access."""
        from .results import rle_to_mask

        return rle_to_mask(self.rle)


@dataclass(frozen=True)
class AutoResult:
    """All objects of one :func:`segment_everything` / :func:`find` call, best rank first."""

    objects: Tuple[AutoObject, ...]
    image_size: Tuple[int, int]
    model: str
    mode: str
    vocabulary: str
    settings: Dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self):
        return iter(self.objects)


@dataclass
class _Candidates:
    """Survivors of the low-resolution filters of one crop (model-frame tensors on the CPU)."""

    lowres: List[torch.Tensor] = field(default_factory=list)     # (n, h4, w4) logits, valid area
    boxes: List[torch.Tensor] = field(default_factory=list)      # (n, 4) original pixels
    probs: List[torch.Tensor] = field(default_factory=list)      # (n, C) class probabilities
    background: List[torch.Tensor] = field(default_factory=list)  # (n,)
    stability: List[torch.Tensor] = field(default_factory=list)  # (n,)
    points: List[torch.Tensor] = field(default_factory=list)     # (n, 2) original pixels

    def cat(self) -> Dict[str, torch.Tensor]:
        return {k: torch.cat(v) for k, v in vars(self).items() if v}


def _as_image(predictor: "Predictor", image) -> Tuple[Optional[LoadedImage], "ImageEmbedding"]:
    from .embedding import ImageEmbedding

    if isinstance(image, ImageEmbedding):
        return None, image
    img = image if isinstance(image, LoadedImage) else load_image(image)
    return img, predictor.embed(img)


def _crop_boxes(hw: Tuple[int, int], opts: EverythingOptions) -> List[Tuple[List[int], int]]:
    from segment_anything.utils.amg import generate_crop_boxes

    boxes, layers = generate_crop_boxes(hw, opts.crop_n_layers, opts.crop_overlap_ratio)
    return [(list(map(int, b)), int(l)) for b, l in zip(boxes, layers)]


Progress = Callable[[int, int], None]
"""``progress(done, total)``: prompts decoded so far out of all grid prompts of the call. It may
raise (e.g. :class:`Cancelled`) to stop the call between two batches."""


class Cancelled(Exception):
    """Raised by a progress callback to stop a prompt-free call; nothing is returned."""


def _decode_crop(predictor: "Predictor", emb: "ImageEmbedding", grid: np.ndarray, clf, ctx, mode: str,
                 opts: EverythingOptions, offset: Tuple[int, int],
                 tick: Callable[[int], None] = lambda n: None) -> Dict[str, torch.Tensor]:
    """Decode the grid on one crop's embedding and keep what passes the low-res filters;
    ``tick(n)`` after each batch of ``n`` prompts."""
    from segment_anything.utils.amg import calculate_stability_score

    net, frame, dev = predictor.loaded.model, emb.frame, predictor.device
    h, w = frame.orig_hw
    pts = torch.as_tensor(grid * np.array([w, h], dtype=np.float64), dtype=torch.float32)
    rh, rw = frame.resized_hw
    out_c = _Candidates()
    emb_dev = emb.to(dev)
    for s in range(0, len(pts), opts.points_per_batch):
        p = pts[s:s + opts.points_per_batch]
        tick(len(p))
        mp = frame.to_model(p).to(dev)[:, None, :]
        labels = torch.ones(mp.shape[:2], dtype=torch.float32, device=dev)
        with torch.inference_mode():
            out = net.decode(emb_dev.features, mp, labels, None)
            logits = out.mask_logits[:, 0].float()                   # (n, s4, s4) padded frame
            scale = frame.size / logits.shape[-1]
            vh, vw = int(np.ceil(rh / scale)), int(np.ceil(rw / scale))
            valid = logits[:, :vh, :vw]
            area = (valid > 0).flatten(1).sum(1)
            stab = calculate_stability_score(valid, 0.0, opts.stability_offset)
            keep = (area > 0) & (stab >= opts.stability_thresh)
            if not bool(keep.any()):
                continue
            idx = torch.nonzero(keep).flatten()
            sub = HeadOutput(mask_logits=out.mask_logits[idx], roi_embedding=out.roi_embedding[idx],
                             roi_boxes=out.roi_boxes[idx])
            if mode == "head":
                cls_logits = net.head_logits(sub, ctx.packed)
            else:
                cls_logits = net.fused_logits(emb_dev.features, sub, ctx.packed, sub.roi_boxes, ctx.base, ctx.known)
            prob = torch.softmax(cls_logits.float(), dim=-1)
            cls_prob, bg = prob[:, :-1], prob[:, -1]
            ok = cls_prob.max(dim=1).values >= opts.min_score
            if not bool(ok.any()):
                continue
            idx, cls_prob, bg = idx[ok], cls_prob[ok], bg[ok]
            boxes = mask_to_box(valid[idx] > 0) * scale                # model frame
            boxes = frame.to_original(boxes.cpu()) + torch.tensor([offset[0], offset[1]] * 2, dtype=torch.float32)
        out_c.lowres.append(valid[idx].cpu())
        out_c.boxes.append(boxes)
        out_c.probs.append(cls_prob.cpu())
        out_c.background.append(bg.cpu())
        out_c.stability.append(stab[idx].cpu())
        out_c.points.append(p[idx.cpu()] + torch.tensor(offset, dtype=torch.float32))
    return out_c.cat()


def _final_mask(lowres: torch.Tensor, side: int, emb: "ImageEmbedding", crop: Sequence[int],
                full_hw: Tuple[int, int], min_region_area: int) -> np.ndarray:
    """One low-res survivor (logits over the valid area of the ``side`` x ``side`` padded grid)
    -> (H, W) bool over the whole image (a crop's mask placed at its offset)."""
    from segment_anything.utils.amg import remove_small_regions

    frame = emb.frame
    grid = lowres.new_full((side, side), -1e4)
    grid[:lowres.shape[0], :lowres.shape[1]] = lowres
    with torch.inference_mode():
        m = (upsample_masks(grid[None, None], frame)[0] > 0).numpy()
    if min_region_area > 0:
        m, _ = remove_small_regions(m, min_region_area, "holes")
        m, _ = remove_small_regions(m, min_region_area, "islands")
    x0, y0, x1, y1 = crop
    if (x0, y0, x1, y1) == (0, 0, full_hw[1], full_hw[0]):
        return m
    full = np.zeros(full_hw, dtype=bool)
    full[y0:y1, x0:x1] = m
    return full


def segment_everything(predictor: "Predictor", image, vocabulary: "VocabSource" = None, *,
                       options: Optional[EverythingOptions] = None, mode: Optional[str] = None,
                       queries: Optional[Sequence[str]] = None, progress: Optional[Progress] = None) -> AutoResult:
    """Every object on ``image`` with its mask and name (see the module doc for the pipeline).

    Args:
        predictor: the :class:`~ovsam_core.Predictor` (model, caches, vocabularies).
        image: path, array, PIL image, :class:`LoadedImage` or an :class:`ImageEmbedding`
            (an embedding alone allows ``crop_n_layers=0`` only: crops need the pixels).
        vocabulary: names to choose from (preset, list, file, ``vocab build`` folder);
            default the model's vocabulary.
        options: :class:`EverythingOptions`.
        mode: ``head`` or ``fused`` recognition; default the model's.
        queries: find mode (used by :func:`find`): the first ``len(queries)`` classes of the
            vocabulary are queries; keep only objects whose top-1 class is one of them.
        progress: ``progress(done, total)`` before each decoded batch of grid prompts; it may
            raise :class:`Cancelled` (or anything) to stop between batches.
    Returns:
        :class:`AutoResult`, objects sorted by ``rank`` (best first).
    """
    from pycocotools import mask as mask_utils
    from segment_anything.utils.amg import build_all_layer_point_grids
    from torchvision.ops import batched_nms

    from .predictor import MODES
    from .results import mask_to_rle

    opts = (options or EverythingOptions()).validated()
    mode = mode or predictor.loaded.spec.mode
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose head or fused")
    img, emb = _as_image(predictor, image)
    predictor.check_embedding(emb)
    if img is None and opts.crop_n_layers > 0:
        raise ValueError("crop_n_layers > 0 needs the image itself (crops are embedded separately); "
                         "pass the image instead of its embedding")
    clf = predictor.classifier(vocabulary)
    if queries is not None and len(queries) > len(clf.vocabulary):
        raise ValueError("queries must be the first classes of the vocabulary")
    ctx = predictor._class_context(clf, mode)
    names = ctx.names
    full_hw = emb.frame.orig_hw
    grids = build_all_layer_point_grids(opts.points_per_side, opts.crop_n_layers,
                                        opts.crop_n_points_downscale_factor)
    found: List[Dict[str, Any]] = []
    crops = _crop_boxes(full_hw, opts)
    total = sum(len(grids[layer]) for _, layer in crops)
    state = {"done": 0}

    def tick(n: int) -> None:
        if progress is not None:
            progress(state["done"], total)
        state["done"] += n

    for crop, layer in crops:
        x0, y0, x1, y1 = crop
        if layer == 0:
            cemb = emb
        else:
            assert img is not None
            cemb = predictor.embed(load_image(np.ascontiguousarray(img.rgb[y0:y1, x0:x1])))
        c = _decode_crop(predictor, cemb, grids[layer], clf, ctx, mode, opts, (x0, y0), tick)
        if not c:
            continue
        cls_score = c["probs"].max(dim=1).values
        rank = cls_score * c["stability"]
        keep = batched_nms(c["boxes"], rank, torch.zeros(len(rank), dtype=torch.long), opts.box_nms_thresh)
        if layer > 0:  # masks cut by the crop's inner edges belong to a neighbouring crop
            from segment_anything.utils.amg import is_box_near_crop_edge

            near = is_box_near_crop_edge(c["boxes"][keep], crop, [0, 0, full_hw[1], full_hw[0]])
            keep = keep[~near]
        for i in keep.tolist():
            found.append({"emb": cemb, "crop": crop, "rank": float(rank[i]), "box": c["boxes"][i],
                          **{k: c[k][i] for k in ("lowres", "probs", "background", "stability", "points")}})
    if opts.crop_n_layers > 0 and found:  # duplicates across crops
        boxes = torch.stack([f["box"] for f in found])
        ranks = torch.tensor([f["rank"] for f in found])
        keep = batched_nms(boxes, ranks, torch.zeros(len(found), dtype=torch.long), opts.box_nms_thresh)
        found = [found[i] for i in keep.tolist()]
    found.sort(key=lambda f: -f["rank"])
    side = 4 * predictor.loaded.model.cfg.embedding_size       # decoder output grid (stride 4)
    min_area = opts.min_area_ratio * full_hw[0] * full_hw[1]
    kept: List[AutoObject] = []
    kept_rles: List[Dict[str, Any]] = []
    for f in found:
        top = torch.topk(f["probs"], min(opts.top_k, f["probs"].numel()))
        li = int(top.indices[0])
        query = None
        if queries is not None:
            if li >= len(queries):
                continue
            query = queries[li]
        mask = _final_mask(f["lowres"], side, f["emb"], f["crop"], full_hw, opts.min_region_area)
        area = int(mask.sum())
        if area == 0 or area < min_area:
            continue
        rle = mask_to_rle(mask)
        if kept_rles:
            coco = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in (rle, *kept_rles)]
            iou = mask_utils.iou(coco[1:], coco[:1], [0])[:, 0]
            inside = mask_utils.iou(coco[:1], coco[1:], [1] * len(kept_rles))[0]   # |new & old| / |new|
            same = np.array([o.label_index == li for o in kept])
            if (iou > opts.mask_nms_thresh).any() or (same & (inside >= opts.containment_thresh)).any():
                continue
        ys = np.flatnonzero(mask.any(axis=1))
        xs = np.flatnonzero(mask.any(axis=0))
        ti, ts = top.indices.tolist(), top.values.tolist()
        kept.append(AutoObject(
            rle=rle, label=names[li], label_index=li, score=float(ts[0]),
            top_k=tuple((names[a], float(b)) for a, b in zip(ti, ts)), top_k_indices=tuple(int(a) for a in ti),
            bbox_xyxy=(int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1), area=area,
            point=(float(f["points"][0]), float(f["points"][1])),
            quality={"stability": float(f["stability"]), "background": float(f["background"]), "rank": f["rank"]},
            crop_box=tuple(f["crop"]), query=query,
            label_path=tuple(names[a] for a in clf.vocabulary.ancestors(li))))
        kept_rles.append(rle)
        if opts.max_objects is not None and len(kept) >= opts.max_objects:
            break
    settings = {k: getattr(opts, k) for k in vars(opts)}
    if queries is not None:
        settings["queries"] = list(queries)
    return AutoResult(tuple(kept), full_hw, predictor.name, mode, clf.vocabulary.key, settings)


def find_vocabulary(queries: Sequence[str], background: Sequence[str]) -> List[str]:
    """The find-mode vocabulary: the queries first, then the background classes that are not
    one of the queries (compared by their first synonym, case-insensitively)."""
    from .text import split_label

    def first(name: str) -> str:
        return ((split_label(name) or [name])[0]).strip().lower()

    q = [str(x).strip() for x in queries]
    if not q or any(not x for x in q):
        raise ValueError(f"find needs at least one non-empty query, got {list(queries)!r}")
    taken = {first(x) for x in q}
    return q + [b for b in background if first(b) not in taken]


def find(predictor: "Predictor", image, queries: Sequence[str], background: "VocabSource" = None, *,
         options: Optional[EverythingOptions] = None, mode: Optional[str] = None,
         progress: Optional[Progress] = None) -> AutoResult:
    """Every instance of the ``queries`` (class names) on ``image``.

    The queries compete against ``background`` (a vocabulary; default the model's own, e.g.
    ``lvis``), so a query only wins masks that look more like it than like any other class; the
    objects whose top-1 class is a query are returned, each with ``query`` set. Pass
    ``background=[]`` to let the queries compete only with each other and the background column.
    """
    from .vocabulary import load_vocabulary

    if isinstance(queries, str):
        queries = [queries]
    spec_vocab = predictor.loaded.spec.vocabulary
    if background is None:
        background = spec_vocab
    bg_names = list(load_vocabulary(background).names) if not (isinstance(background, (list, tuple))
                                                              and len(background) == 0) else []
    vocab = find_vocabulary(queries, bg_names)
    res = segment_everything(predictor, image, vocab, options=options, mode=mode, queries=list(queries),
                             progress=progress)
    return replace(res, vocabulary=f"find:{','.join(vocab[:len(queries)])}")
