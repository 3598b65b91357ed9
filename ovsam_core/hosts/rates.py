"""The numbers a host reports after matching predictions with ground truth.

:func:`detection_rates`: precision, recall and F-score from true/false positives and misses
(:func:`match_rates`: the same from class-agnostic matches);
:func:`label_accuracy`: top-1 accuracy of predicted names against true names (compared
case-insensitively, ``_`` read as a space), overall and per true class.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Tuple


def detection_rates(tp: int, fp: int, fn: int) -> Dict[str, Any]:
    """``{"tp", "fp", "fn", "precision", "recall", "fscore"}`` (0.0 where undefined)."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn), "precision": p, "recall": r,
            "fscore": 2 * p * r / (p + r) if p + r else 0.0}


def match_rates(matched: Iterable[Optional[float]], truths: int) -> Dict[str, Any]:
    """:func:`detection_rates` of one-to-one matching: ``matched`` holds one entry per prediction
    (the IoU of its match, None when unmatched); ``truths`` ground-truth objects, each match
    finds one."""
    m = list(matched)
    tp = sum(v is not None for v in m)
    return detection_rates(tp, len(m) - tp, truths - tp)


def same_label(a: Optional[str], b: Optional[str]) -> bool:
    """Whether two class names are the same name (case, ``_`` and spacing ignored)."""
    def norm(s):
        return None if s is None else " ".join(str(s).replace("_", " ").lower().split())
    return norm(a) == norm(b)


def label_accuracy(pairs: Iterable[Tuple[Optional[str], Optional[str]]]
                   ) -> Tuple[float, float, Dict[str, Dict[str, Any]], int]:
    """(accuracy, mean per-class accuracy, {true class: {"accuracy", "count"}}, objects) of
    ``(predicted, true)`` name pairs; pairs without a true name are left out."""
    per: Dict[str, list] = {}
    for pred, truth in pairs:
        if truth is None:
            continue
        c = per.setdefault(str(truth), [0, 0])
        c[0] += int(same_label(pred, truth))
        c[1] += 1
    total = sum(c[1] for c in per.values())
    per_class = {k: {"accuracy": c[0] / c[1], "count": c[1]} for k, c in sorted(per.items())}
    acc = sum(c[0] for c in per.values()) / total if total else 0.0
    mean = sum(v["accuracy"] for v in per_class.values()) / len(per_class) if per_class else 0.0
    return acc, mean, per_class, total
