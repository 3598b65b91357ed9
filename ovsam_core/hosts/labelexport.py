"""Export of a label volume and its objects' records: the label image (TIFF), a CSV class table
and COCO JSON (written by any host; napari's "Export" button).

* ``<name>_labels.tif``: the label volume (int32, zlib-compressed; tiled and written chunk by
  chunk for :class:`~ovsam_core.hosts.labelvolume.ChunkedLabels`, so a 20k x 20k volume never becomes dense;
  BigTIFF when it could exceed 4 GB).
* ``<name>_classes.csv``: one row per object: label id, class name, score, the model's
  suggestion, how the class was chosen, area, box, plane and top-k (JSON).
* ``<name>_coco.json``: COCO instances with class names as categories and compressed RLE
  masks at the full plane size (encoded from each object's box, never from a full-size mask).
  For n-D stacks each plane with objects is one COCO image (``ovsam_plane`` holds its index).

:func:`read_coco` reads such a file back (masks decoded with pycocotools). Qt-free.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from .labelvolume import ChunkedLabels, plane_bbox
from ..masks import crop_to_rle

FORMAT = "ovsam-napari-coco-v1"   # kept: files written before the move to the core read back
TILE = 512     # TIFF tiles and label reads


def object_mask(labels, plane, label_id: int, bbox_xyxy) -> Tuple[np.ndarray, int, int]:
    """The object's current pixels inside its box, read tile by tile: (tight bool crop, y0, x0)."""
    x0, y0, x1, y1 = (int(v) for v in bbox_xyxy)
    crop = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), bool)
    for ty in range(y0, y1, TILE):
        for tx in range(x0, x1, TILE):
            ty1, tx1 = min(ty + TILE, y1), min(tx + TILE, x1)
            crop[ty - y0:ty1 - y0, tx - x0:tx1 - x0] = plane_bbox(labels, plane, ty, ty1, tx, tx1) == label_id
    if not crop.any():
        return crop[:0, :0], y0, x0
    rows = np.flatnonzero(crop.any(axis=1))
    cols = np.flatnonzero(crop.any(axis=0))
    return crop[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], y0 + int(rows[0]), x0 + int(cols[0])


def _object_crops(labels, objects: Mapping[int, Any]):
    """(record, tight crop of the object's current pixels, y0, x0) for every committed object."""
    for rec in objects.values():
        crop, y0, x0 = object_mask(labels, rec.plane, rec.label_id, rec.bbox_xyxy)
        if crop.size:
            yield rec, crop, y0, x0


def to_coco(labels, objects: Mapping[int, Any], src) -> Dict[str, Any]:
    """COCO instances of the committed objects (see the module doc).

    Args:
        labels: the label volume; objects: label id -> record (``ObjectRecord``); src: the
            image (``name``, ``height``, ``width``).
    """
    H, W = src.height, src.width
    names = sorted({r.class_name for r in objects.values()})
    cat_id = {n: i + 1 for i, n in enumerate(names)}
    images: Dict[Tuple[int, ...], Dict[str, Any]] = {}
    anns: List[Dict[str, Any]] = []
    for rec, crop, y0, x0 in _object_crops(labels, objects):
        if rec.plane not in images:
            suffix = "" if not rec.plane else "_" + "_".join(map(str, rec.plane))
            images[rec.plane] = {"id": len(images) + 1, "file_name": f"{src.name}{suffix}", "width": W,
                                 "height": H, "ovsam_plane": list(rec.plane)}
        h, w = crop.shape
        anns.append({
            "id": len(anns) + 1, "image_id": images[rec.plane]["id"], "category_id": cat_id[rec.class_name],
            "segmentation": crop_to_rle(crop, y0, x0, H, W), "area": int(crop.sum()),
            "bbox": [x0, y0, w, h], "iscrowd": 0,
            "score": None if math.isnan(rec.score) else round(rec.score, 6),
            "ovsam_label": rec.label_id, "ovsam_suggested": rec.suggested_class, "ovsam_choice": rec.choice,
            "ovsam_top_k": [[n, round(s, 6)] for n, s in rec.top_k],
        })
    return {"info": {"description": "ovsam napari export", "format": FORMAT},
            "images": sorted(images.values(), key=lambda d: d["id"]),
            "categories": [{"id": cat_id[n], "name": n, "supercategory": "object"} for n in names],
            "annotations": anns}


def read_coco(path: Union[str, Path]) -> List[Dict[str, Any]]:
    """Objects of a COCO file: ``{"class_name", "mask" (H, W bool), "plane", "label", "bbox"}``."""
    from ..results import rle_to_mask

    doc = json.loads(Path(path).read_text("utf-8"))
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    imgs = {i["id"]: i for i in doc["images"]}
    out = []
    for a in doc["annotations"]:
        img = imgs[a["image_id"]]
        seg = a["segmentation"]
        if isinstance(seg["counts"], list):  # uncompressed RLE
            from pycocotools import mask as mask_utils

            h, w = seg["size"]
            seg = mask_utils.frPyObjects(seg, h, w)
            seg = {"size": seg["size"], "counts": seg["counts"].decode("ascii")}
        out.append({"class_name": cats[a["category_id"]], "mask": rle_to_mask(seg),
                    "plane": tuple(img.get("ovsam_plane", ())), "label": a.get("ovsam_label"),
                    "bbox": a["bbox"], "score": a.get("score")})
    return out


def write_csv(objects: Mapping[int, Any], path: Union[str, Path]) -> Path:
    path = Path(path)
    cols = ["label", "class_name", "score", "suggested_class", "suggested_score", "choice", "area",
            "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "plane", "top_k"]
    with path.open("w", newline="", encoding="utf-8") as f:
        wr = csv.writer(f)
        wr.writerow(cols)
        for r in objects.values():
            wr.writerow([r.label_id, r.class_name, "" if math.isnan(r.score) else f"{r.score:.6f}",
                         r.suggested_class, f"{r.suggested_score:.6f}", r.choice, r.area, *r.bbox_xyxy,
                         ",".join(map(str, r.plane)), json.dumps([[n, round(s, 6)] for n, s in r.top_k])])
    return path


def read_csv(path: Union[str, Path]) -> List[Dict[str, str]]:
    with Path(path).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_labels_tif(labels, path: Union[str, Path], progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """The label volume as a zlib-compressed TIFF (tiled, chunk by chunk, when chunked)."""
    import tifffile

    path = Path(path)
    shape = tuple(int(s) for s in labels.shape)
    big = math.prod(shape) * 4 > 2 ** 31
    if isinstance(labels, ChunkedLabels):
        H, W = shape[-2:]
        n = math.prod(shape[:-2]) * math.ceil(H / TILE) * math.ceil(W / TILE)

        def tiles():
            for i, t in enumerate(labels.iter_tiles((TILE, TILE))):
                if progress is not None:
                    progress(i + 1, n)
                yield t

        tifffile.imwrite(path, data=tiles(), shape=shape, dtype=labels.dtype, tile=(TILE, TILE),
                         compression="zlib", bigtiff=big)
    else:
        tifffile.imwrite(path, np.asarray(labels), compression="zlib", bigtiff=big)
    return path


def export_all(labels, objects: Mapping[int, Any], src, out_dir: Union[str, Path], name: str,
               progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, Path]:
    """Write ``<name>_labels.tif``, ``<name>_classes.csv`` and ``<name>_coco.json`` (see :func:`to_coco`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"labels": write_labels_tif(labels, out / f"{name}_labels.tif", progress),
             "csv": write_csv(objects, out / f"{name}_classes.csv")}
    coco = out / f"{name}_coco.json"
    coco.write_text(json.dumps(to_coco(labels, objects, src), indent=1), encoding="utf-8")
    paths["coco"] = coco
    return paths
