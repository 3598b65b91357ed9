"""Metrics: per-prompt mask IoU and recognition accuracy (the paper's Table 1) and COCO mask AP
with pycocotools (Table 2 style), both split into base and novel classes."""
from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """|P ∩ G| / |P ∪ G| of two boolean masks (0 when both are empty)."""
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    union = int(np.logical_or(pred, gt).sum())
    if union == 0:
        return 0.0
    return int(np.logical_and(pred, gt).sum()) / union


@dataclass
class InstanceResult:
    """One prompt's outcome."""

    image_id: int
    ann_id: int
    category_id: int
    label: int               # GT class index
    split: str               # base / novel / other
    prompt: str              # box / point
    pred_label: int
    score: float
    iou: float

    @property
    def correct(self) -> bool:
        return self.pred_label == self.label


def summarize_table1(rows: Iterable[InstanceResult]) -> Dict[str, Dict[str, float]]:
    """``{prompt: {miou, miou_base, miou_novel, acc, acc_base, acc_novel, n, n_base, n_novel}}``.

    mIoU is the mean of the per-instance IoUs; accuracy the fraction of instances whose top-1
    class is the GT class. Values are None where a split has no instance.
    """
    by_prompt: Dict[str, List[InstanceResult]] = {}
    for r in rows:
        by_prompt.setdefault(r.prompt, []).append(r)
    out: Dict[str, Dict[str, float]] = {}
    for prompt, rs in by_prompt.items():
        s: Dict[str, Optional[float]] = {}
        for tag, sel in (("", rs), ("_base", [r for r in rs if r.split == "base"]),
                         ("_novel", [r for r in rs if r.split == "novel"])):
            s[f"miou{tag}"] = float(np.mean([r.iou for r in sel])) if sel else None
            s[f"acc{tag}"] = float(np.mean([r.correct for r in sel])) if sel else None
            s[f"n{tag}"] = len(sel)
        out[prompt] = s
    return out


def rows_to_dicts(rows: Iterable[InstanceResult]) -> List[dict]:
    return [asdict(r) for r in rows]


# --------------------------------------------------------------------------- COCO AP
AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def coco_mask_ap(gt_json: dict, results: Sequence[dict], base_cat_ids: Sequence[int] = (),
                 novel_cat_ids: Sequence[int] = ()) -> Dict[str, Optional[float]]:
    """COCO mask AP (pycocotools ``COCOeval``, iouType ``segm``) of ``results`` (COCO results
    format with RLE ``segmentation``), plus ``AP_base`` / ``AP_novel``: the mean over those
    categories of the per-category AP (IoU 0.50:0.95, all areas, 100 detections).

    Values are in [0, 1]; None where undefined (no GT or no result).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out: Dict[str, Optional[float]] = {k: None for k in AP_KEYS}
    out.update(AP_base=None, AP_novel=None, num_detections=len(results))
    if not results or not gt_json.get("annotations"):
        return out
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = _with_defaults(gt_json)
        gt.createIndex()
        dt = gt.loadRes([dict(r) for r in results])
        ev = COCOeval(gt, dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for k, v in zip(AP_KEYS, ev.stats[:6]):
        out[k] = None if v < 0 else float(v)
    prec = ev.eval["precision"]  # (T, R, K, A, M)
    cat_pos = {c: i for i, c in enumerate(ev.params.catIds)}

    def mean_ap(ids: Sequence[int]) -> Optional[float]:
        vals = []
        for c in ids:
            if c not in cat_pos:
                continue
            p = prec[:, :, cat_pos[c], 0, -1]
            p = p[p > -1]
            if p.size:
                vals.append(float(p.mean()))
        return float(np.mean(vals)) if vals else None

    out["AP_base"] = mean_ap(base_cat_ids)
    out["AP_novel"] = mean_ap(novel_cat_ids)
    return out


def _with_defaults(doc: dict) -> dict:
    d = dict(doc)
    anns = []
    for a in doc.get("annotations", []):
        a = dict(a)
        a.setdefault("iscrowd", 0)
        if "area" not in a and "bbox" in a:
            a["area"] = float(a["bbox"][2] * a["bbox"][3])
        anns.append(a)
    d["annotations"] = anns
    d.setdefault("info", {})
    d.setdefault("licenses", [])
    return d
