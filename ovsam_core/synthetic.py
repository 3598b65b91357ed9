"""Deterministic synthetic instance-segmentation data in COCO format (tests and demos).

Each image shows a few non-overlapping objects on a smooth noisy background. Every category
is a named *shape* painted with a named *colour/texture*, e.g. ``"red circle"`` or
``"striped ring"``, so both the mask (shape) and the name (appearance) can be learned.
Annotations use all three COCO segmentation encodings: polygons (most shapes), compressed RLE
(``ring``, which has a hole) and uncompressed RLE (``cross``).

Everything is a pure function of the seed: the same arguments give byte-identical images and
JSON. Layout written by :func:`generate_dataset`::

    OUT/images/<split>/000000.png ...
    OUT/annotations/instances_<split>.json     COCO instances (categories carry a "split":
                                               "base" or "novel" field)
    OUT/detections_<split>.json                a simulated detector (COCO results format:
                                               jittered GT boxes + false positives, with scores)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

PathLike = Union[str, Path]


@dataclass(frozen=True)
class SynthCategory:
    """A synthetic class: ``shape`` drawn with ``texture`` in ``color`` (RGB 0-255)."""

    id: int
    name: str
    shape: str
    texture: str
    color: Tuple[int, int, int]
    split: str = "base"


#: The default classes. The last two are "novel" (held out of training by the OV split).
CATEGORIES: Tuple[SynthCategory, ...] = (
    SynthCategory(1, "red circle", "circle", "solid", (220, 40, 40)),
    SynthCategory(2, "green square", "square", "solid", (40, 190, 60)),
    SynthCategory(3, "blue triangle", "triangle", "solid", (40, 70, 220)),
    SynthCategory(4, "yellow star", "star", "dots", (235, 210, 40)),
    SynthCategory(5, "striped ring", "ring", "stripes", (240, 240, 240)),
    SynthCategory(6, "checkered diamond", "diamond", "checker", (200, 90, 230)),
    SynthCategory(7, "orange cross", "cross", "solid", (250, 140, 20), split="novel"),
    SynthCategory(8, "dotted hexagon", "hexagon", "dots", (30, 200, 200), split="novel"),
)

SHAPES = ("circle", "square", "triangle", "star", "ring", "diamond", "cross", "hexagon")
TEXTURES = ("solid", "stripes", "checker", "dots")


# --------------------------------------------------------------------------- shapes
def _regular(n: int, cx: float, cy: float, r: float, rot: float) -> np.ndarray:
    a = rot + 2 * math.pi * np.arange(n) / n
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)


def shape_polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> np.ndarray:
    """(K, 2) polygon vertices (x, y) of a shape centred at (cx, cy) with outer radius r."""
    if shape == "circle":
        return _regular(40, cx, cy, r, 0.0)
    if shape == "square":
        return _regular(4, cx, cy, r, rot + math.pi / 4)
    if shape == "diamond":
        pts = _regular(4, cx, cy, 1.0, rot)
        return np.stack([cx + (pts[:, 0] - cx) * r * 0.7, cy + (pts[:, 1] - cy) * r], axis=1)
    if shape == "triangle":
        return _regular(3, cx, cy, r, rot - math.pi / 2)
    if shape == "hexagon":
        return _regular(6, cx, cy, r, rot)
    if shape == "star":
        outer = _regular(5, cx, cy, r, rot - math.pi / 2)
        inner = _regular(5, cx, cy, r * 0.45, rot - math.pi / 2 + math.pi / 5)
        return np.stack([outer, inner], axis=1).reshape(-1, 2)
    if shape == "cross":
        t = 0.36
        base = np.array([[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1], [-t, 1],
                         [-t, t], [-1, t], [-1, -t], [-t, -t]], dtype=np.float64)
        c, s = math.cos(rot), math.sin(rot)
        rotm = np.array([[c, -s], [s, c]])
        return base @ rotm.T * r + np.array([cx, cy])
    raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")


def _poly_mask(poly: np.ndarray, h: int, w: int) -> np.ndarray:
    from .geometry import polygons_to_mask

    return polygons_to_mask([poly.reshape(-1).tolist()], h, w)


def shape_mask(shape: str, cx: float, cy: float, r: float, rot: float, h: int, w: int
               ) -> Tuple[np.ndarray, object]:
    """(mask (h, w) bool, COCO segmentation) of one shape, rasterised as COCO does."""
    from pycocotools import mask as mask_utils

    if shape == "ring":
        yy, xx = np.mgrid[0:h, 0:w]
        d2 = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2
        mask = (d2 <= r * r) & (d2 >= (0.5 * r) ** 2)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return mask, {"size": [h, w], "counts": rle["counts"].decode("ascii")}
    poly = shape_polygon(shape, cx, cy, r, rot)
    poly[:, 0] = poly[:, 0].clip(0, w)
    poly[:, 1] = poly[:, 1].clip(0, h)
    poly = np.round(poly, 2)  # the JSON holds 2 decimals: rasterise exactly what is written
    mask = _poly_mask(poly, h, w)
    if shape == "cross":
        return mask, {"size": [h, w], "counts": uncompressed_rle(mask)}
    return mask, [[float(v) for v in poly.reshape(-1)]]


def uncompressed_rle(mask: np.ndarray) -> List[int]:
    """COCO uncompressed RLE counts (column-major runs, starting with background)."""
    flat = np.asarray(mask, dtype=np.uint8).reshape(-1, order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0] + runs
    return [int(r) for r in runs]


# --------------------------------------------------------------------------- painting
def _texture(texture: str, color: Tuple[int, int, int], rows: slice, cols: slice,
             rng: np.random.Generator) -> np.ndarray:
    """The texture over ``[rows, cols]`` of the image (pattern in image coordinates)."""
    base = np.array(color, dtype=np.float32) + rng.normal(0, 8, 3)
    yy, xx = np.mgrid[rows, cols]
    img = np.broadcast_to(base, yy.shape + (3,)).copy()
    if texture == "stripes":
        period = rng.uniform(7, 10)
        angle = rng.uniform(0, math.pi)
        band = (np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period) > 0)
        img[band] = (30, 30, 30)
    elif texture == "checker":
        cell = int(rng.integers(6, 9))
        board = ((xx // cell + yy // cell) % 2).astype(bool)
        img[board] *= 0.35
    elif texture == "dots":
        period = int(rng.integers(7, 10))
        dot = ((xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2) < (period / 3.2) ** 2
        img[dot] = (20, 20, 20)
    elif texture != "solid":
        raise ValueError(f"unknown texture {texture!r}; choose one of {TEXTURES}")
    return img


def _background(h: int, w: int, rng: np.random.Generator, value_range: Tuple[float, float] = (70, 150)
                ) -> np.ndarray:
    c0 = rng.uniform(*value_range, 3)
    c1 = rng.uniform(*value_range, 3)
    t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    if rng.random() < 0.5:
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = c0 * (1 - t) + c1 * t
    img = img + rng.normal(0, 10, (h, w, 3))
    return np.broadcast_to(img, (h, w, 3)).astype(np.float32)


def synth_image(rng: np.random.Generator, categories: Sequence[SynthCategory], *, image_size: int = 256,
                min_objects: int = 1, max_objects: int = 4, min_radius: float = 0.12,
                max_radius: float = 0.24, aspect_choices: Sequence[float] = (1.0, 0.75, 1.333),
                background: Tuple[float, float] = (70, 150)) -> Tuple[np.ndarray, List[dict]]:
    """One image (h, w, 3) uint8 and its objects ``[{category, mask, segmentation}]``.

    ``image_size`` is the long side; the aspect ratio is drawn from ``aspect_choices``
    (w / h). Object radii are fractions of the long side; objects do not overlap.
    ``background`` is the range of the two background gradient colours (per channel, 0-255).
    """
    aspect = float(aspect_choices[int(rng.integers(len(aspect_choices)))])
    if aspect >= 1:
        w, h = image_size, max(16, int(round(image_size / aspect)))
    else:
        h, w = image_size, max(16, int(round(image_size * aspect)))
    img = _background(h, w, rng, background)
    n = int(rng.integers(min_objects, max_objects + 1))
    placed: List[Tuple[float, float, float]] = []
    objects: List[dict] = []
    for _ in range(n):
        cat = categories[int(rng.integers(len(categories)))]
        for _try in range(30):
            r = rng.uniform(min_radius, max_radius) * image_size
            r = min(r, 0.48 * min(h, w))
            cx = rng.uniform(r, w - r)
            cy = rng.uniform(r, h - r)
            if all(math.hypot(cx - px, cy - py) > r + pr + 2 for px, py, pr in placed):
                break
        else:
            continue
        rot = rng.uniform(0, 2 * math.pi)
        mask, seg = shape_mask(cat.shape, cx, cy, r, rot, h, w)
        if mask.sum() < 16:
            continue
        ys = np.flatnonzero(mask.any(axis=1))
        xs = np.flatnonzero(mask.any(axis=0))
        rows, cols = slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1)
        tex = _texture(cat.texture, cat.color, rows, cols, rng)
        sub = mask[rows, cols]
        img[rows, cols][sub] = tex[sub]
        placed.append((cx, cy, r))
        objects.append({"category": cat, "mask": mask, "segmentation": seg})
    return np.clip(img, 0, 255).astype(np.uint8), objects


def _bbox(mask: np.ndarray) -> List[float]:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return [float(xs[0]), float(ys[0]), float(xs[-1] + 1 - xs[0]), float(ys[-1] + 1 - ys[0])]


def _simulated_detections(rng: np.random.Generator, image_id: int, anns: List[dict], h: int, w: int,
                          categories: Sequence[SynthCategory]) -> List[dict]:
    dets = []
    for a in anns:
        x, y, bw, bh = a["bbox"]
        j = rng.normal(0, 0.04, 4) * np.array([bw, bh, bw, bh])
        x0 = float(np.clip(x + j[0], 0, w - 1))
        y0 = float(np.clip(y + j[1], 0, h - 1))
        x1 = float(np.clip(x + bw + j[2], x0 + 1, w))
        y1 = float(np.clip(y + bh + j[3], y0 + 1, h))
        dets.append({"image_id": image_id, "category_id": a["category_id"],
                     "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                     "score": round(float(rng.uniform(0.6, 1.0)), 4)})
    if rng.random() < 0.5:  # a false positive
        bw, bh = rng.uniform(0.1, 0.3) * w, rng.uniform(0.1, 0.3) * h
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        dets.append({"image_id": image_id, "category_id": categories[int(rng.integers(len(categories)))].id,
                     "bbox": [round(float(x0), 2), round(float(y0), 2), round(float(bw), 2), round(float(bh), 2)],
                     "score": round(float(rng.uniform(0.05, 0.4)), 4)})
    return dets


def generate_split(out_dir: PathLike, split: str, num_images: int, seed: int = 0, *,
                   categories: Sequence[SynthCategory] = CATEGORIES, image_size: int = 256,
                   classes: Optional[Sequence[str]] = None, **image_kw) -> Dict[str, Path]:
    """Write one split (images, instances JSON, simulated detections); returns the paths.

    Args:
        classes: restrict the drawn classes to these names (all categories are still listed
            in the JSON, so class indices do not change between splits).
    """
    out = Path(out_dir)
    img_dir = out / "images" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    drawn = [c for c in categories if classes is None or c.name in set(classes)]
    if not drawn:
        raise ValueError(f"no category left to draw (classes={classes!r})")
    split_key = sum(ord(c) * 131 ** i for i, c in enumerate(split)) % (2 ** 31)
    from PIL import Image

    images, annotations, detections = [], [], []
    ann_id = 1
    for i in range(num_images):
        rng = np.random.default_rng([seed, split_key, i])
        img, objects = synth_image(rng, drawn, image_size=image_size, **image_kw)
        h, w = img.shape[:2]
        image_id = i + 1
        name = f"{i:06d}.png"
        Image.fromarray(img).save(img_dir / name, optimize=False, compress_level=1)
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        anns = []
        for obj in objects:
            anns.append({"id": ann_id, "image_id": image_id, "category_id": obj["category"].id,
                         "segmentation": obj["segmentation"], "area": float(obj["mask"].sum()),
                         "bbox": _bbox(obj["mask"]), "iscrowd": 0})
            ann_id += 1
        annotations.extend(anns)
        detections.extend(_simulated_detections(rng, image_id, anns, h, w, drawn))
    doc = {
        "info": {"description": f"ovsam synthetic shapes ({split}, seed {seed})", "version": "1"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c.id, "name": c.name, "supercategory": c.shape, "split": c.split}
                       for c in categories],
    }
    ann_file = out / "annotations" / f"instances_{split}.json"
    ann_file.write_text(json.dumps(doc))
    det_file = out / f"detections_{split}.json"
    det_file.write_text(json.dumps(detections))
    return {"images": img_dir, "annotations": ann_file, "detections": det_file}


def generate_dataset(out_dir: PathLike, splits: Mapping[str, int] = None, seed: int = 0, *,
                     image_size: int = 256, train_base_only: bool = False,
                     categories: Sequence[SynthCategory] = CATEGORIES, **image_kw) -> Dict[str, Dict[str, Path]]:
    """Write several splits, e.g. ``{"train": 64, "val": 16}`` (the default).

    With ``train_base_only`` the ``train`` split draws base classes only (the novel ones
    never appear in training images, as in an open-vocabulary benchmark).
    """
    splits = dict(splits or {"train": 64, "val": 16})
    base = [c.name for c in categories if c.split == "base"]
    return {s: generate_split(out_dir, s, n, seed, categories=categories, image_size=image_size,
                              classes=base if (train_base_only and s == "train") else None, **image_kw)
            for s, n in splits.items()}
