"""Markdown tables of evaluation results (one row per method)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional


def _pct(v: Optional[float]) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_report(results: Dict[str, Any]) -> str:
    ds = results.get("dataset", {})
    out = [f"# Evaluation: {ds.get('annotations', '')}", "",
           f"{ds.get('images', 0)} images, {ds.get('instances', 0)} instances, {ds.get('classes', 0)} classes "
           f"({ds.get('base_classes', 0)} base, {ds.get('novel_classes', 0)} novel).", ""]
    methods = results.get("methods", {})
    prompts = sorted({p for m in methods.values() for p in m.get("table1", {})}, key=lambda p: (p != "box", p))
    for p in prompts:
        out += [f"## Table 1 — {p} prompts (per-instance mask IoU and top-1 accuracy, %)", ""]
        rows = []
        for name, m in methods.items():
            s = m.get("table1", {}).get(p)
            if s is None:
                continue
            rows.append([name, _pct(s["miou_base"]), _pct(s["miou_novel"]), _pct(s["miou"]),
                         _pct(s["acc_base"]), _pct(s["acc_novel"]), _pct(s["acc"]), str(s["n"])])
        header = ["method", "IoU base", "IoU novel", "IoU all", "Acc base", "Acc novel", "Acc all", "n"]
        out += [_table(header, rows), ""]
    if any("table2" in m for m in methods.values()):
        out += ["## Table 2 — detector boxes as prompts (COCO mask AP, %)", ""]
        rows = []
        for name, m in methods.items():
            t = m.get("table2")
            if t is None:
                continue
            rows.append([name] + [_pct(t.get(k)) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl",
                                                           "AP_base", "AP_novel")])
        out += [_table(["method", "AP", "AP50", "AP75", "APs", "APm", "APl", "AP base", "AP novel"], rows), ""]
    st = results.get("settings", {})
    if st:
        out += ["Settings: " + ", ".join(f"{k}={v}" for k, v in st.items() if v is not None), ""]
    return "\n".join(out)
