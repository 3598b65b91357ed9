"""Run methods over a COCO-format dataset and write Table-1 / Table-2 style results.

Table 1 (the paper's OV-SAM protocol): every GT instance is prompted once by its GT box and
once by its centre point; per-instance mask IoU and top-1 recognition accuracy, split into
base and novel classes. Table 2: boxes from an external detector file (COCO results format)
are the prompts; the masks, with the recognised class and score ``det`` / ``cls`` /
``det*cls``, are scored with COCO mask AP (pycocotools), overall and base / novel.

Outputs in ``out_dir``: ``results.json`` (all numbers + settings), ``results.md`` (markdown
tables), ``predictions_<method>.jsonl`` (every prompt: GT, prediction, IoU, and the predicted
mask as COCO RLE, so anything can be recomputed by hand) and ``detections_<method>.json``
(Table-2 results in COCO format).
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..training.data import CocoInstances
from .methods import Method
from .metrics import InstanceResult, coco_mask_ap, mask_iou, summarize_table1
from .prompts import center_points, gt_boxes_xyxy
from .report import markdown_report

log = logging.getLogger(__name__)
SCORE_MODES = ("det", "cls", "det*cls")


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def evaluate(
    dataset: CocoInstances,
    methods: Sequence[Method],
    *,
    prompts: Sequence[str] = ("box", "point"),
    point_frame: int = 1024,
    detections: Optional[Sequence[dict]] = None,
    score_mode: str = "det*cls",
    max_images: Optional[int] = None,
    out_dir: Optional[Path] = None,
    progress: bool = True,
    settings: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Evaluate ``methods`` on ``dataset``; returns (and writes) the results.

    Args:
        prompts: Table-1 prompt types, ``box`` and/or ``point``.
        point_frame: model-frame size in which centre points are computed (the evaluated
            OVSAM model's ``image_size``; 1024 upstream).
        detections: Table-2 detector boxes (COCO results: ``image_id``, ``bbox`` xywh,
            ``score``); None skips Table 2.
        score_mode: Table-2 score of a mask: detector score, class probability, or their product.
    """
    from tqdm.auto import tqdm

    if score_mode not in SCORE_MODES:
        raise ValueError(f"score_mode must be one of {SCORE_MODES}")
    bad = set(prompts) - {"box", "point"}
    if bad:
        raise ValueError(f"unknown prompt types {sorted(bad)}; use box and/or point")
    records = dataset.records[:max_images] if max_images else dataset.records
    dets_by_image: Dict[int, List[dict]] = {}
    for d in detections or ():
        dets_by_image.setdefault(int(d["image_id"]), []).append(d)
    rows: Dict[str, List[InstanceResult]] = {m.name: [] for m in methods}
    coco_res: Dict[str, List[dict]] = {m.name: [] for m in methods}
    pred_files = {}
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        pred_files = {m.name: open(out_dir / f"predictions_{_safe(m.name)}.jsonl", "w") for m in methods}
    try:
        for rec in tqdm(records, desc="evaluate", unit="img", disable=not progress):
            rgb = dataset.load_rgb(rec)
            gt_masks, labels = dataset.load_masks(rec)
            boxes = gt_boxes_xyxy(rec.anns)
            pts = center_points(gt_masks, point_frame) if ("point" in prompts and len(gt_masks)) else None
            dets = dets_by_image.get(rec.id, []) if detections is not None else []
            for m in methods:
                m.set_image(rgb)
                for prompt in prompts if len(gt_masks) else ():
                    kw = {"boxes": boxes} if prompt == "box" else {"points": pts}
                    masks, probs = m.predict(clip_boxes=boxes, **kw)
                    pred = probs.argmax(1)
                    for j, a in enumerate(rec.anns):
                        r = InstanceResult(
                            image_id=rec.id, ann_id=int(a.get("id", j)), category_id=int(a["category_id"]),
                            label=int(labels[j]), split=dataset.class_split(int(labels[j])), prompt=prompt,
                            pred_label=int(pred[j]), score=float(probs[j, pred[j]]),
                            iou=mask_iou(masks[j], gt_masks[j]))
                        rows[m.name].append(r)
                        if pred_files:
                            row = dict(r.__dict__, prompt_xy=(pts[j].tolist() if prompt == "point" else None),
                                       prompt_box=(boxes[j].tolist() if prompt == "box" else None),
                                       mask=_rle(masks[j]))
                            pred_files[m.name].write(json.dumps(row) + "\n")
                if dets:
                    db = np.array([d["bbox"] for d in dets], dtype=np.float32)
                    db[:, 2:] += db[:, :2]
                    # no upstream reference for detector prompts: the CLIP RoI is the prompt box
                    masks, probs = m.predict(boxes=db)
                    pred = probs.argmax(1)
                    for j, d in enumerate(dets):
                        ds = float(d.get("score", 1.0))
                        cs = float(probs[j, pred[j]])
                        score = {"det": ds, "cls": cs, "det*cls": ds * cs}[score_mode]
                        coco_res[m.name].append({"image_id": rec.id, "category_id": dataset.cat_ids[int(pred[j])],
                                                 "segmentation": _rle(masks[j]), "score": score})
    finally:
        for f in pred_files.values():
            f.close()
    base_ids = [c for c, s in zip(dataset.cat_ids, dataset.split or []) if s == "base"]
    novel_ids = [c for c, s in zip(dataset.cat_ids, dataset.split or []) if s == "novel"]
    results: Dict[str, Any] = {
        "dataset": {"annotations": str(dataset.annotations), "images": len(records),
                    "instances": sum(len(r.anns) for r in records), "classes": len(dataset.class_names),
                    "base_classes": len(base_ids), "novel_classes": len(novel_ids)},
        "settings": dict(settings or {}, prompts=list(prompts), point_frame=point_frame,
                         score_mode=score_mode if detections is not None else None),
        "methods": {},
    }
    gt_json = None
    if detections is not None:
        gt_json = json.loads(Path(dataset.annotations).read_text())
        keep = {r.id for r in records}
        gt_json["images"] = [im for im in gt_json["images"] if im["id"] in keep]
        gt_json["annotations"] = [a for a in gt_json.get("annotations", []) if a["image_id"] in keep]
    for m in methods:
        entry: Dict[str, Any] = {"table1": summarize_table1(rows[m.name])}
        if detections is not None:
            entry["table2"] = coco_mask_ap(gt_json, coco_res[m.name], base_ids, novel_ids)
            if out_dir is not None:
                (out_dir / f"detections_{_safe(m.name)}.json").write_text(json.dumps(coco_res[m.name]))
        results["methods"][m.name] = entry
    if out_dir is not None:
        (out_dir / "results.json").write_text(json.dumps(results, indent=1))
        (out_dir / "results.md").write_text(markdown_report(results))
    return results
