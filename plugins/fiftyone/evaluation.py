"""``evaluate``: mask quality and recognition of ovsam labels against the prompts' ground truth.

Two runs of FiftyOne's ``evaluate_detections(use_masks=True)`` (COCO-style matching on instance
masks at one IoU threshold) separate the two ways a prompted open-vocabulary segmenter fails:

* ``<eval_key>_mask`` with ``classwise=False``: a prediction matches a ground-truth object of
  any class, so its precision/recall measure the masks, independent of naming;
* ``<eval_key>_cls`` with ``classwise=True``: only same-label matches count (recognition and
  masks together).

For the recognition run TP/FP/FN are FiftyOne's counts (``<key>_tp``... summed). FiftyOne
still marks a cross-class match of the ``classwise=False`` run as FP + FN, so for mask quality a
TP is any matched prediction (its ``<key>_iou`` is set), FP the other predictions and FN the
unmatched ground truth. Precision = TP / (TP + FP), recall = TP / (TP + FN). Because every
prediction comes from one prompt, two
numbers need no matching at all: ``miou``, the mean mask IoU of each prediction with the
ground-truth object that prompted it (``prompt_id``), and the paper's **accuracy**: the share of
objects whose top-1 label equals the label of their prompt (compared case-insensitively, ``_``
read as a space), overall and per ground-truth class.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ovsam_core import crop_iou, resize_nearest

from .store import dataset_name, get_run, set_info


def _norm(label: Optional[str]) -> Optional[str]:
    return None if label is None else " ".join(str(label).replace("_", " ").lower().split())


def _check_detections(samples, field: str, role: str) -> None:
    f = samples.get_field(field)
    if f is None:
        raise ValueError(f"{role} field {field!r} does not exist on dataset {dataset_name(samples)!r}")
    doc = getattr(getattr(f, "document_type", None), "__name__", None)
    if doc != "Detections":
        raise ValueError(f"{role} field {field!r} holds {doc or type(f).__name__}; evaluation needs Detections")


def _counts(samples, key: str, pred_field: str, gt_field: str, any_class: bool) -> Dict[str, Any]:
    if any_class:
        ious = [v for vs in samples.values(f"{pred_field}.detections.{key}_iou") for v in (vs or [])]
        tp = sum(v is not None for v in ious)
        fp = len(ious) - tp
        fn = samples.count(f"{gt_field}.detections") - tp
    else:
        tp, fp, fn = (int(samples.sum(f"{key}_{k}") or 0) for k in ("tp", "fp", "fn"))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"eval_key": key, "tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r,
            "fscore": 2 * p * r / (p + r) if p + r else 0.0}


def accuracy(samples, pred_field: str) -> Tuple[float, float, Dict[str, Dict[str, Any]], int]:
    """(accuracy, mean per-class accuracy, per class {accuracy, count}, objects) of top-1 labels."""
    preds = samples.values(f"{pred_field}.detections.label")
    gts = samples.values(f"{pred_field}.detections.prompt_label")
    per: Dict[str, List[int]] = {}
    for ps, gs in zip(preds, gts):
        for p, g in zip(ps or [], gs or []):
            if g is None:
                continue
            c = per.setdefault(str(g), [0, 0])
            c[0] += int(_norm(p) == _norm(g))
            c[1] += 1
    total = sum(c[1] for c in per.values())
    acc = sum(c[0] for c in per.values()) / total if total else 0.0
    per_class = {k: {"accuracy": c[0] / c[1], "count": c[1]} for k, c in sorted(per.items())}
    mean = float(np.mean([v["accuracy"] for v in per_class.values()])) if per_class else 0.0
    return acc, mean, per_class, total


def _pixels(det, w: int, h: int) -> Tuple[int, int, np.ndarray]:
    """(x0, y0, mask) of a detection in pixels; a detection without mask fills its box."""
    x, y, bw, bh = det.bounding_box
    x0, y0 = int(round(x * w)), int(round(y * h))
    x1, y1 = max(int(round((x + bw) * w)), x0 + 1), max(int(round((y + bh) * h)), y0 + 1)
    if det.mask is None:
        return x0, y0, np.ones((y1 - y0, x1 - x0), bool)
    return x0, y0, resize_nearest(det.mask, y1 - y0, x1 - x0)


def mask_iou(a, b, w: int, h: int) -> float:
    """Pixel IoU of two detections (box + cropped mask) in a ``w`` x ``h`` image."""
    (ax, ay, am), (bx, by, bm) = _pixels(a, w, h), _pixels(b, w, h)
    return crop_iou(am, (ay, ax), bm, (by, bx))


def paired_miou(samples, pred_field: str, gt_field: str) -> Tuple[float, int]:
    """Mean IoU of each prediction with the ground-truth object of its ``prompt_id``."""
    samples.compute_metadata(progress=False)
    ious: List[float] = []
    for s in samples.select_fields([pred_field, gt_field, "metadata"]).iter_samples():
        pred, gt = s[pred_field], s[gt_field]
        if pred is None or gt is None:
            continue
        by_id = {str(d.id): d for d in gt.detections}
        w, h = s.metadata.width, s.metadata.height
        for d in pred.detections:
            g = by_id.get(str(d["prompt_id"])) if d.has_field("prompt_id") else None
            if g is not None:
                ious.append(mask_iou(d, g, w, h))
    return (float(np.mean(ious)) if ious else 0.0), len(ious)


def evaluate(
    samples,
    pred_field: str = "ovsam",
    gt_field: Optional[str] = None,
    *,
    eval_key: str = "ovsam",
    iou: float = 0.5,
    overwrite: bool = False,
    compute_mAP: bool = False,
) -> Dict[str, Any]:
    """Evaluate ``pred_field`` against ``gt_field`` (default: the prompt field it was made from).

    Returns:
        ``{"mask": {...}, "recognition": {...}, "accuracy", "mean_class_accuracy",
        "per_class_accuracy", "miou", "objects", ...}`` (also stored in
        ``dataset.info["ovsam"]["evaluations"][eval_key]``). The two FiftyOne evaluations are
        kept under ``<eval_key>_mask`` and ``<eval_key>_cls`` for the App's panels.
    """
    if gt_field is None:
        run = get_run(samples, pred_field) or {}
        gt_field = run.get("prompt_field") or run.get("classes_field")
        if not gt_field:
            raise ValueError(f"give gt_field: {pred_field!r} was not written from a prompt or classes field, so "
                             "its ground truth is unknown")
    _check_detections(samples, pred_field, "prediction")
    _check_detections(samples, gt_field, "ground-truth")
    if not 0 < float(iou) <= 1:
        raise ValueError(f"iou must be in (0, 1], got {iou}")
    keys = {"mask": f"{eval_key}_mask", "recognition": f"{eval_key}_cls"}
    for k in keys.values():
        if samples.has_evaluation(k):
            if not overwrite:
                raise ValueError(f"evaluation {k!r} exists; pass overwrite=True or another eval_key")
            samples.delete_evaluation(k)
    out: Dict[str, Any] = {"pred_field": pred_field, "gt_field": gt_field, "iou": float(iou)}
    for name, classwise in (("mask", False), ("recognition", True)):
        res = samples.evaluate_detections(pred_field, gt_field=gt_field, eval_key=keys[name], use_masks=True,
                                          classwise=classwise, iou=float(iou), compute_mAP=compute_mAP,
                                          progress=False)
        out[name] = _counts(samples, keys[name], pred_field, gt_field, any_class=not classwise)
        if compute_mAP:
            out[name]["mAP"] = float(res.mAP())
    if compute_mAP:
        out["mAP"] = out["recognition"]["mAP"]
    acc, mean_acc, per_class, n = accuracy(samples, pred_field)
    miou, paired = paired_miou(samples, pred_field, gt_field)
    out.update(accuracy=acc, mean_class_accuracy=mean_acc, per_class_accuracy=per_class, objects=n,
               miou=miou, paired_objects=paired)
    set_info(samples, "evaluations", eval_key, out)
    return out

