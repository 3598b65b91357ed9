"""Recall and precision of the prompt-free modes against ground truth (COCO instances).

An object counts as **found** when a returned object has mask IoU >= ``iou_thresh`` with it
**and** its name; returned objects are matched greedily, best score first, each to at most one
ground-truth object, so a duplicate is a false positive. Reported overall and per class split
(base / novel):

* everything mode: ``recall`` = found / ground-truth objects, ``precision`` = matched / returned
  objects (a returned object counts for a split when its *label* belongs to it), and
  ``mask_recall`` (IoU >= threshold whatever the name: segmentation alone);
* find mode: per queried class ``c``, recall over the objects of ``c`` and precision over the
  objects returned for ``c`` (micro-averaged over the classes queried).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np


def match_objects(pred_masks: Sequence[np.ndarray], pred_labels: Sequence[str], scores: Sequence[float],
                  gt_masks: Sequence[np.ndarray], gt_labels: Sequence[str], iou_thresh: float = 0.5) -> Dict[str, Any]:
    """Greedy matching (best score first). Returns ``tp`` (per prediction, bool), ``gt_found``
    (per GT, bool: matched with the right name) and ``gt_segmented`` (per GT: some prediction
    reaches the IoU threshold, whatever its name)."""
    from .metrics import mask_iou

    iou = np.array([[mask_iou(p, g) for g in gt_masks] for p in pred_masks]).reshape(len(pred_masks), len(gt_masks))
    tp = np.zeros(len(pred_masks), bool)
    found = np.zeros(len(gt_masks), bool)
    for i in np.argsort(-np.asarray(scores, dtype=float), kind="stable"):
        cand = [(iou[i, j], j) for j in range(len(gt_masks))
                if not found[j] and gt_labels[j] == pred_labels[i] and iou[i, j] >= iou_thresh]
        if cand:
            j = max(cand)[1]
            found[j] = tp[i] = True
    segmented = (iou >= iou_thresh).any(axis=0) if len(pred_masks) else np.zeros(len(gt_masks), bool)
    return {"tp": tp, "gt_found": found, "gt_segmented": segmented}


def _ratio(a: int, b: int) -> Optional[float]:
    return a / b if b else None


class _Tally:
    def __init__(self) -> None:
        self.c: Dict[str, int] = {}

    def add(self, key: str, v: int) -> None:
        self.c[key] = self.c.get(key, 0) + int(v)

    def get(self, key: str) -> int:
        return self.c.get(key, 0)


def evaluate_auto(predictor, images: str, annotations: str, *, task: str = "everything",
                  queries: Optional[Sequence[str]] = None, max_images: Optional[int] = None,
                  iou_thresh: float = 0.5, progress: bool = False, **options: Any) -> Dict[str, Any]:
    """Run ``segment_everything`` (``task="everything"``) or ``find`` (``task="find"``, one call
    per queried class; default: the base classes) on a COCO dataset and score it.

    Returns a dict of counts and ratios: ``all`` / ``base`` / ``novel`` each with ``recall``,
    ``precision`` (and ``mask_recall`` in everything mode), plus ``n_images`` and ``per_class``.
    """
    from tqdm.auto import tqdm

    from ..training.data import CocoInstances

    ds = CocoInstances(annotations, images, None)
    names = list(ds.class_names)
    split = {n: ds.class_split(i) for i, n in enumerate(names)}
    recs = ds.records[:max_images] if max_images else ds.records
    if task == "find":
        queries = list(queries) if queries else [n for n in names if split[n] == "base"]
    elif task != "everything":
        raise ValueError(f"task must be everything or find, got {task!r}")
    t = _Tally()
    per_class: Dict[str, _Tally] = {}
    for rec in tqdm(recs, desc=f"evaluate {task}", disable=not progress):
        rgb = ds.load_rgb(rec)
        gt_masks, gt_idx = ds.load_masks(rec)
        gt_labels = [names[int(k)] for k in gt_idx]
        emb = predictor.embed(rgb)
        runs = [(None, predictor.segment_everything(emb, **options))] if task == "everything" else \
            [(q, predictor.find(emb, [q], **options)) for q in queries]
        for q, res in runs:
            pm = [o.mask for o in res.objects]
            pl = [o.label for o in res.objects]
            m = match_objects(pm, pl, [o.score for o in res.objects], list(gt_masks), gt_labels, iou_thresh)
            if q is None:
                for j, lab in enumerate(gt_labels):
                    for key in ("all", split[lab]):
                        t.add(f"{key}.gt", 1)
                        t.add(f"{key}.found", m["gt_found"][j])
                        t.add(f"{key}.segmented", m["gt_segmented"][j])
                for i, lab in enumerate(pl):
                    for key in ("all", split.get(lab, "other")):
                        t.add(f"{key}.returned", 1)
                        t.add(f"{key}.tp", m["tp"][i])
            else:
                c = per_class.setdefault(q, _Tally())
                n_gt = sum(lab == q for lab in gt_labels)
                found = sum(bool(f) for f, lab in zip(m["gt_found"], gt_labels) if lab == q)
                for tally in (c, t):
                    for key in ("all", split.get(q, "other")):
                        tally.add(f"{key}.gt", n_gt)
                        tally.add(f"{key}.found", found)
                        tally.add(f"{key}.returned", len(pl))
                        tally.add(f"{key}.tp", int(m["tp"].sum()))
    out: Dict[str, Any] = {"task": task, "n_images": len(recs), "iou_thresh": iou_thresh,
                           "options": dict(options), "queries": list(queries) if queries else None}
    for key in ("all", "base", "novel"):
        row = {"gt": t.get(f"{key}.gt"), "found": t.get(f"{key}.found"), "returned": t.get(f"{key}.returned"),
               "recall": _ratio(t.get(f"{key}.found"), t.get(f"{key}.gt")),
               "precision": _ratio(t.get(f"{key}.tp"), t.get(f"{key}.returned"))}
        if task == "everything":
            row["mask_recall"] = _ratio(t.get(f"{key}.segmented"), t.get(f"{key}.gt"))
        out[key] = row
    out["per_class"] = {q: {"recall": _ratio(c.get("all.found"), c.get("all.gt")),
                            "precision": _ratio(c.get("all.tp"), c.get("all.returned")),
                            "gt": c.get("all.gt"), "returned": c.get("all.returned")}
                        for q, c in per_class.items()}
    return out


def auto_markdown(res: Dict[str, Any]) -> str:
    """A small markdown table of :func:`evaluate_auto`'s result."""
    def f(v: Optional[float]) -> str:
        return "-" if v is None else f"{v:.3f}"

    cols = ["recall", "precision"] + (["mask_recall"] if res["task"] == "everything" else [])
    lines = [f"{res['task']} mode, {res['n_images']} images, IoU >= {res['iou_thresh']}", "",
             "| classes | GT objects | returned | " + " | ".join(cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for key in ("all", "base", "novel"):
        r = res[key]
        lines.append(f"| {key} | {r['gt']} | {r['returned']} | " + " | ".join(f(r[c]) for c in cols) + " |")
    return "\n".join(lines)
