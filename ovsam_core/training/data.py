"""Datasets for training and evaluation.

* :class:`CocoInstances`: a COCO-format instances file (COCO, LVIS or your own images +
  JSON; polygons, compressed or uncompressed RLE), its class list and base/novel split.
* :class:`Clip2SamDataset`: CLIP2SAM training samples: LSJ augmentation, upstream prompt
  sampling (40 prompts per image, about half GT boxes and half single mask points).
* :class:`ImageFolderDataset`: any folder of images for SAM2CLIP distillation.
* :class:`GlobalBatchSampler`: a deterministic global batch order that does not depend on the
  number of processes (so a 2-process run sees exactly the batches of a 1-process run with
  the same global batch) and can start at any step (exact resume).

Randomness is per sample: each sample's generator is seeded with ``(seed, epoch, index)``,
so results do not depend on worker processes, ranks or resume points.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..preprocess import PIXEL_MEAN, PIXEL_STD, resized_size

PathLike = Union[str, Path]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------- masks
def decode_segmentation(seg: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, compressed or uncompressed RLE) -> (H, W) bool."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        polys = [p for p in seg if len(p) >= 6]
        if not polys:
            return np.zeros((height, width), dtype=bool)
        rles = mask_utils.frPyObjects([list(map(float, p)) for p in polys], height, width)
        return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    if isinstance(seg, dict):
        counts = seg.get("counts")
        h, w = seg.get("size", [height, width])
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(seg, h, w)
        else:
            rle = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        return mask_utils.decode(rle).astype(bool)
    raise ValueError(f"unsupported segmentation {type(seg).__name__}: expected polygons or RLE")


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """(K, H, W) bool -> (K, 4) float32 tight boxes ``x0, y0, x1, y1`` (exclusive ends)."""
    out = np.zeros((len(masks), 4), dtype=np.float32)
    for i, m in enumerate(masks):
        ys = np.flatnonzero(m.any(axis=1))
        xs = np.flatnonzero(m.any(axis=0))
        if len(xs):
            out[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return out


# --------------------------------------------------------------------------- instances file
def image_file_name(im: dict) -> str:
    """``file_name``, or for LVIS (which has none) the path of ``coco_url`` after the host,
    e.g. ``train2017/000000391895.jpg`` (relative to the COCO root, as mmdet does)."""
    if im.get("file_name"):
        return im["file_name"]
    url = im.get("coco_url") or im.get("url")
    if not url:
        raise ValueError(f"image {im.get('id')} has neither file_name nor coco_url")
    return url.split("://", 1)[-1].split("/", 1)[-1]


@dataclass
class ImageRecord:
    id: int
    file_name: str
    height: int
    width: int
    anns: List[dict]


class CocoInstances:
    """A COCO instances JSON: images, annotations, class names and the base/novel split.

    Classes are the categories sorted by id; ``cat_index[category_id]`` is the contiguous
    label (the classifier row). Crowd annotations are skipped (upstream ignores them).

    Args:
        annotations: the JSON file.
        images: the image folder (``file_name`` is relative to it).
        vocabulary: ``None`` (category names), ``"coco"`` or ``"lvis"`` (shipped presets with
            upstream synonyms; the category count must match).
        novel_classes: names (or preset/category names) to treat as novel; overrides other sources.
    """

    def __init__(self, annotations: PathLike, images: PathLike, vocabulary: Optional[str] = None,
                 novel_classes: Sequence[str] = ()) -> None:
        self.annotations = Path(annotations)
        self.images_dir = Path(images)
        if not self.annotations.is_file():
            raise FileNotFoundError(f"annotations file not found: {self.annotations}")
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.images_dir}")
        doc = json.loads(self.annotations.read_text())
        cats = sorted(doc.get("categories", []), key=lambda c: c["id"])
        if not cats:
            raise ValueError(f"{self.annotations} lists no categories")
        self.categories = cats
        self.cat_ids = [c["id"] for c in cats]
        self.cat_index = {c["id"]: i for i, c in enumerate(cats)}
        self.category_names = [c["name"] for c in cats]
        self.vocabulary = vocabulary
        self.class_names, split = self._names_and_split(vocabulary)
        if novel_classes:
            wanted = {n.lower() for n in novel_classes}
            names = [n.lower() for n in self.category_names]
            shown = [n.lower() for n in self.class_names]
            unknown = wanted - set(names) - set(shown)
            if unknown:
                raise ValueError(f"novel_classes not in the dataset: {sorted(unknown)}")
            split = ["novel" if (a in wanted or b in wanted) else "base" for a, b in zip(names, shown)]
        self.split = split            # per class: base / novel / other, or None
        by_image: Dict[int, List[dict]] = {}
        for a in doc.get("annotations", []):
            if a.get("iscrowd", 0):
                continue
            if a["category_id"] not in self.cat_index:
                raise ValueError(f"annotation {a.get('id')} has unknown category_id {a['category_id']}")
            by_image.setdefault(a["image_id"], []).append(a)
        self.records = [ImageRecord(im["id"], image_file_name(im), int(im["height"]), int(im["width"]),
                                    by_image.get(im["id"], []))
                        for im in sorted(doc.get("images", []), key=lambda im: im["id"])]

    def _names_and_split(self, vocabulary: Optional[str]) -> Tuple[List[str], Optional[List[str]]]:
        cats = self.categories
        if vocabulary:
            from ..text.vocab_data import get_vocabulary

            vocab = get_vocabulary(vocabulary)
            if len(vocab) != len(cats):
                raise ValueError(f"vocabulary {vocabulary!r} has {len(vocab)} classes but {self.annotations} "
                                 f"has {len(cats)} categories; set data.vocabulary: null to use the "
                                 "dataset's own category names")
            return list(vocab.names), list(vocab.split) if vocab.split else None
        names = [c["name"] for c in cats]
        if all("split" in c for c in cats):
            return names, [str(c["split"]) for c in cats]
        if all("frequency" in c for c in cats):
            return names, ["novel" if c["frequency"] == "r" else "base" for c in cats]
        return names, None

    # ------------------------------------------------------------------ split helpers
    def base_mask(self) -> torch.Tensor:
        """(C,) bool: base classes (all True when there is no split)."""
        if self.split is None:
            return torch.ones(len(self.class_names), dtype=torch.bool)
        return torch.tensor([s == "base" for s in self.split])

    def novel_mask(self) -> torch.Tensor:
        if self.split is None:
            return torch.zeros(len(self.class_names), dtype=torch.bool)
        return torch.tensor([s == "novel" for s in self.split])

    def known_mask(self) -> Optional[torch.Tensor]:
        """(C,) bool: base or novel (None when no class is 'other')."""
        if self.split is None or all(s in ("base", "novel") for s in self.split):
            return None
        return torch.tensor([s in ("base", "novel") for s in self.split])

    def class_split(self, label: int) -> str:
        return "base" if self.split is None else self.split[label]

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.records)

    def filter_classes(self, keep: torch.Tensor, drop_empty: bool = True) -> "CocoInstances":
        """Keep only annotations whose class is in ``keep`` ((C,) bool); drop emptied images."""
        keep_ids = {cid for cid, k in zip(self.cat_ids, keep.tolist()) if k}
        recs = []
        for r in self.records:
            anns = [a for a in r.anns if a["category_id"] in keep_ids]
            if anns or not drop_empty:
                recs.append(ImageRecord(r.id, r.file_name, r.height, r.width, anns))
        self.records = recs
        return self

    def load_rgb(self, rec: ImageRecord) -> np.ndarray:
        from PIL import Image

        path = self.images_dir / rec.file_name
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        if rgb.shape[:2] != (rec.height, rec.width):
            raise ValueError(f"{path} is {rgb.shape[1]}x{rgb.shape[0]} but the annotations say "
                             f"{rec.width}x{rec.height}")
        return rgb

    def load_masks(self, rec: ImageRecord) -> Tuple[np.ndarray, np.ndarray]:
        """(K, H, W) bool masks and (K,) int64 labels of an image's annotations."""
        masks = np.zeros((len(rec.anns), rec.height, rec.width), dtype=bool)
        for i, a in enumerate(rec.anns):
            masks[i] = decode_segmentation(a["segmentation"], rec.height, rec.width)
        labels = np.array([self.cat_index[a["category_id"]] for a in rec.anns], dtype=np.int64)
        return masks, labels


# --------------------------------------------------------------------------- transforms
def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("training needs OpenCV: pip install 'ovsam[train]'") from e
    return cv2


def resize_image_and_masks(rgb: np.ndarray, masks: np.ndarray, h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """cv2 bilinear for the image, nearest for the masks (mmcv/mmdet defaults)."""
    cv2 = _cv2()
    img = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((len(masks), h, w), dtype=bool)
    for i, m in enumerate(masks):
        out[i] = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    return img, out


def normalize_pad(rgb: np.ndarray, size: int) -> torch.Tensor:
    """(h, w, 3) uint8 -> (3, size, size) float32: SAM/ImageNet normalisation, then zero pad."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float()
    x = (x - torch.tensor(PIXEL_MEAN).view(3, 1, 1)) / torch.tensor(PIXEL_STD).view(3, 1, 1)
    h, w = x.shape[1:]
    return torch.nn.functional.pad(x, (0, size - w, 0, size - h), value=0.0)


def pad_masks(masks: np.ndarray, size: int) -> np.ndarray:
    k, h, w = masks.shape
    out = np.zeros((k, size, size), dtype=bool)
    out[:, :h, :w] = masks
    return out


def lsj(rgb: np.ndarray, masks: np.ndarray, labels: np.ndarray, rng: np.random.Generator, size: int,
        flip_prob: float = 0.5, scale_range: Tuple[float, float] = (0.9, 2.0), min_mask_area: int = 32
        ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Large-scale jitter as upstream: flip -> random keep-ratio resize to ``size * ratio`` ->
    random ``size`` x ``size`` crop (negative crops allowed) -> drop masks under ``min_mask_area``."""
    if rng.random() < flip_prob:
        rgb = rgb[:, ::-1]
        masks = masks[:, :, ::-1]
    ratio = rng.uniform(*scale_range)
    target = size * ratio
    h, w = rgb.shape[:2]
    s = target / max(h, w)
    nh, nw = max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5))
    rgb, masks = resize_image_and_masks(np.ascontiguousarray(rgb), np.ascontiguousarray(masks), nh, nw)
    ch, cw = min(size, nh), min(size, nw)
    oy = int(rng.integers(0, nh - ch + 1))
    ox = int(rng.integers(0, nw - cw + 1))
    rgb = rgb[oy:oy + ch, ox:ox + cw]
    masks = masks[:, oy:oy + ch, ox:ox + cw]
    keep = masks.reshape(len(masks), -1).sum(1) >= min_mask_area
    return rgb, masks[keep], labels[keep]


def resize_eval(rgb: np.ndarray, masks: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Long side to ``size`` with upstream evaluation rounding (mmcv ``imrescale``)."""
    h, w = resized_size(rgb.shape[0], rgb.shape[1], size, "round")
    return resize_image_and_masks(rgb, masks, h, w)


# --------------------------------------------------------------------------- prompts
def sample_prompts(masks: np.ndarray, num: int, rng: np.random.Generator,
                   box_fraction: Optional[float] = None) -> Dict[str, np.ndarray]:
    """Upstream prompt sampling for one image with K >= 1 instances.

    Instances are tiled to at least ``num`` and the first ``num`` kept; each gets one
    uniformly random pixel of its mask as a point; the prompts are shuffled; the first
    ``num // 2 + 1`` become GT-box prompts and the others single-point prompts (21 / 19 for 40).
    ``box_fraction`` replaces upstream's rule by ``round(num * box_fraction)`` box prompts.

    Returns ``inst`` (N,) instance index, ``is_box`` (N,) bool, ``points`` (N, 2) float (x, y).
    """
    k = len(masks)
    if k == 0:
        return {"inst": np.zeros(0, np.int64), "is_box": np.zeros(0, bool), "points": np.zeros((0, 2), np.float32)}
    inst = np.tile(np.arange(k), math.ceil(num / k))[:num]
    points = np.zeros((len(inst), 2), dtype=np.float32)
    for j, i in enumerate(inst):
        ys, xs = np.nonzero(masks[i])
        p = int(rng.integers(len(xs)))
        points[j] = (xs[p], ys[p])
    perm = rng.permutation(len(inst))
    inst, points = inst[perm], points[perm]
    n = len(inst)
    n_box = n // 2 + 1 if box_fraction is None else int(round(n * box_fraction))
    is_box = np.arange(n) < n_box
    return {"inst": inst.astype(np.int64), "is_box": is_box, "points": points}


def sample_background_points(masks: np.ndarray, valid_hw: Tuple[int, int], num: int, margin: int,
                             rng: np.random.Generator) -> np.ndarray:
    """``num`` points (x, y) on background pixels: inside the valid (unpadded) image area and at
    least ``margin`` pixels (Chebyshev) away from every instance mask. (0, 2) when none is left.

    They train the *objectness* signal: a prompt there must give an empty mask and the
    background class (see ``data.background_prompts``)."""
    h, w = int(valid_hw[0]), int(valid_hw[1])
    fg = masks.any(axis=0)[:h, :w] if len(masks) else np.zeros((h, w), bool)
    if margin > 0 and fg.any():
        import torch.nn.functional as F

        t = torch.from_numpy(fg.astype(np.float32))[None, None]
        fg = F.max_pool2d(t, 2 * margin + 1, stride=1, padding=margin)[0, 0].numpy() > 0
    ys, xs = np.nonzero(~fg)
    if num <= 0 or len(xs) == 0:
        return np.zeros((0, 2), np.float32)
    pick = rng.integers(len(xs), size=num)
    return np.stack([xs[pick], ys[pick]], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- datasets
def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), int(index)])


class Clip2SamDataset(torch.utils.data.Dataset):
    """CLIP2SAM training samples from a :class:`CocoInstances`.

    Items are requested as ``(index, epoch)`` (see :class:`GlobalBatchSampler`); each returns
    ``image`` (3, S, S) float, ``masks`` (K, S, S) bool of the prompted instances, ``boxes``
    (K, 4) and ``labels`` (K,), and the prompts ``inst``/``is_box``/``points`` (see
    :func:`sample_prompts`) plus ``seed`` (for the loss's random point sampling) and
    ``bg_points`` (B, 2): background point prompts (:func:`sample_background_points`; B = 0
    unless ``background_prompts`` is set).
    """

    def __init__(self, instances: CocoInstances, image_size: int, *, seed: int = 0, lsj_aug: bool = True,
                 flip_prob: float = 0.5, scale_range: Tuple[float, float] = (0.9, 2.0),
                 min_mask_area: int = 32, num_prompts: int = 40, background_prompts: int = 0,
                 background_margin: int = 4, box_fraction: Optional[float] = None) -> None:
        self.instances = instances
        self.box_fraction = box_fraction
        self.background_prompts = background_prompts
        self.background_margin = background_margin
        self.size = image_size
        self.seed = seed
        self.lsj = lsj_aug
        self.flip_prob = flip_prob
        self.scale_range = tuple(scale_range)
        self.min_mask_area = min_mask_area
        self.num_prompts = num_prompts

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        index, epoch = (key, 0) if isinstance(key, int) else key
        rng = sample_rng(self.seed, epoch, index)
        rec = self.instances.records[index]
        rgb = self.instances.load_rgb(rec)
        masks, labels = self.instances.load_masks(rec)
        if self.lsj:
            # upstream allows crops without any instance; they would carry no prompt (and no
            # loss), so such a draw is repeated (up to 10 times, then no augmentation)
            for _ in range(10):
                out = lsj(rgb, masks, labels, rng, self.size, self.flip_prob, self.scale_range, self.min_mask_area)
                if len(out[1]):
                    break
            else:
                out = (*resize_eval(rgb, masks, self.size), labels)
            rgb, masks, labels = out
        else:
            rgb, masks = resize_eval(rgb, masks, self.size)
            keep = masks.reshape(len(masks), -1).sum(1) >= max(1, self.min_mask_area)
            masks, labels = masks[keep], labels[keep]
        prompts = sample_prompts(masks, self.num_prompts, rng, self.box_fraction)
        bg = sample_background_points(masks, rgb.shape[:2], self.background_prompts, self.background_margin,
                                      np.random.default_rng([self.seed, epoch, index, 1]))
        used, inst = np.unique(prompts["inst"], return_inverse=True)
        masks = pad_masks(masks[used], self.size)
        return {
            "bg_points": torch.from_numpy(bg),
            "image": normalize_pad(rgb, self.size),
            "masks": torch.from_numpy(masks),
            "boxes": torch.from_numpy(masks_to_boxes(masks)),
            "labels": torch.from_numpy(labels[used]),
            "inst": torch.from_numpy(inst.reshape(-1).astype(np.int64)),
            "is_box": torch.from_numpy(prompts["is_box"]),
            "points": torch.from_numpy(prompts["points"]),
            "seed": int(rng.integers(2 ** 62)),
            "index": index,
            "image_id": rec.id,
        }


def collate(items: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack images; keep per-image variable-size fields as lists."""
    out: Dict[str, Any] = {"image": torch.stack([it["image"] for it in items])}
    for k in items[0]:
        if k != "image":
            out[k] = [it[k] for it in items]
    return out


def list_images(root: PathLike, list_file: Optional[PathLike] = None) -> List[Path]:
    """Images under ``root`` (recursive, sorted), or those listed in ``list_file`` (paths or
    sub-folders relative to ``root``, one per line, as upstream's ``train.txt``)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    if list_file:
        out: List[Path] = []
        for line in Path(list_file).read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            p = root / line
            out.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTENSIONS) if p.is_dir() else [p])
        return out
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


def file_digest(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images resized to long side ``image_size`` (cv2 bilinear), normalised and zero-padded
    to ``image_size`` x ``image_size`` (upstream ``ResizeSAM`` + ``BatchFixedSizePad``).

    Items (``index`` or ``(index, epoch)``): ``image`` (3, S, S), ``path``, ``digest``
    (sha256 of the file, the teacher-cache key), ``index``.
    """

    def __init__(self, paths: Sequence[PathLike], image_size: int) -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("no images found for distillation (check data.images / data.list_file)")
        self.size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[index]) as im:
            rgb = np.asarray(im.convert("RGB"))
        h, w = resized_size(rgb.shape[0], rgb.shape[1], self.size, "round")
        rgb = _cv2().resize(rgb, (w, h), interpolation=_cv2().INTER_LINEAR)
        return normalize_pad(rgb, self.size)

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        index = key if isinstance(key, int) else key[0]
        return {"image": self.load(index), "path": str(self.paths[index]),
                "digest": file_digest(self.paths[index]), "index": index}


# --------------------------------------------------------------------------- sampling
class GlobalBatchSampler:
    """Per-rank batches of a deterministic global order.

    Epoch ``e`` shuffles ``range(n)`` with a generator seeded ``(seed, e)``; global step ``t``
    of the epoch takes items ``[t*G, (t+1)*G)`` (G = ``batch_size * world_size``; the last
    incomplete batch is dropped) and rank ``r`` takes items ``[r*b, (r+1)*b)`` of it. Yields
    lists of ``(index, epoch)`` from global step ``start_step`` to ``total_steps``.
    """

    def __init__(self, n: int, batch_size: int, world_size: int, rank: int, seed: int,
                 total_steps: int, start_step: int = 0, shuffle: bool = True) -> None:
        self.n, self.b, self.world, self.rank = n, batch_size, world_size, rank
        self.seed, self.total, self.start, self.shuffle = seed, total_steps, start_step, shuffle
        if self.steps_per_epoch < 1:
            raise ValueError(f"the dataset has {n} samples, fewer than one global batch "
                             f"({batch_size} x {world_size} processes); lower run.batch_size")

    @property
    def steps_per_epoch(self) -> int:
        return self.n // (self.b * self.world)

    def order(self, epoch: int) -> List[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + int(epoch))
        return torch.randperm(self.n, generator=g).tolist()

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        spe, g = self.steps_per_epoch, self.b * self.world
        cached: Tuple[int, List[int]] = (-1, [])
        for step in range(self.start, self.total):
            epoch, t = divmod(step, spe)
            if cached[0] != epoch:
                cached = (epoch, self.order(epoch))
            glob = cached[1][t * g:(t + 1) * g]
            yield [(i, epoch) for i in glob[self.rank * self.b:(self.rank + 1) * self.b]]
