"""``evaluate``: mask quality and recognition of ovsam labels against ground truth.

Two runs of FiftyOne's ``evaluate_detections(use_masks=True)`` separate the two ways an
open-vocabulary segmenter fails: ``<eval_key>_mask`` (``classwise=False``: a match of any class
is a TP, FP the other predictions, FN the unmatched ground truth: the masks alone) and
``<eval_key>_cls`` (``classwise=True``: FiftyOne's TP/FP/FN; with ``compute_mAP`` its mAP).
For prompted labels two numbers need no matching: ``miou`` (each prediction against the object
of its ``prompt_id``) and the paper's top-1 **accuracy** against the prompt's label.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ovsam_core import detection_rates, label_accuracy, match_rates, paired_ious

from .store import dataset_name, field_kind, get_run, set_info


def _check_detections(samples, field: str, role: str) -> None:
    kind = field_kind(samples, field)
    if kind != "Detections":
        raise ValueError(f"{role} field {field!r} does not exist on dataset {dataset_name(samples)!r}" if kind is None
                         else f"{role} field {field!r} holds {kind}; evaluation needs Detections")


def _counts(samples, key: str, pred_field: str, gt_field: str, any_class: bool) -> Dict[str, Any]:
    if any_class:
        ious = [v for vs in samples.values(f"{pred_field}.detections.{key}_iou") for v in (vs or [])]
        return {"eval_key": key, **match_rates(ious, samples.count(f"{gt_field}.detections"))}
    counts = (int(samples.sum(f"{key}_{k}") or 0) for k in ("tp", "fp", "fn"))
    return {"eval_key": key, **detection_rates(*counts)}


def accuracy(samples, pred_field: str) -> Tuple[float, float, Dict[str, Dict[str, Any]], int]:
    """(accuracy, mean per-class accuracy, per class {accuracy, count}, objects) of top-1 labels."""
    preds = samples.values(f"{pred_field}.detections.label")
    gts = samples.values(f"{pred_field}.detections.prompt_label")
    return label_accuracy((p, g) for ps, gs in zip(preds, gts) for p, g in zip(ps or [], gs or []))


def paired_miou(samples, pred_field: str, gt_field: str) -> Tuple[float, int]:
    """Mean IoU of each prediction with the ground-truth object of its ``prompt_id``."""
    samples.compute_metadata(progress=False)
    ious: List[float] = []
    for s in samples.select_fields([pred_field, gt_field, "metadata"]).iter_samples():
        pred, gt = s[pred_field], s[gt_field]
        if pred is None or gt is None:
            continue
        truths = {str(d.id): (d.bounding_box, d.mask) for d in gt.detections}
        pairs = [(str(d["prompt_id"]), d.bounding_box, d.mask) for d in pred.detections if d.has_field("prompt_id")]
        ious += paired_ious(pairs, truths, s.metadata.width, s.metadata.height)
    return (float(np.mean(ious)) if ious else 0.0), len(ious)


def evaluate(samples, pred_field: str = "ovsam", gt_field: Optional[str] = None, *, eval_key: str = "ovsam",
             iou: float = 0.5, overwrite: bool = False, compute_mAP: bool = False) -> Dict[str, Any]:
    """Evaluate ``pred_field`` against ``gt_field`` (default: the prompt or classes field of the
    run that wrote ``pred_field``).

    Returns:
        ``{"mask": {...}, "recognition": {...}, "mAP" (with compute_mAP), "accuracy",
        "mean_class_accuracy", "per_class_accuracy", "miou", "objects", ...}`` (also stored in
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

