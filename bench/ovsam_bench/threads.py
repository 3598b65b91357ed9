"""Section "threads": decode at 1 vs 2 torch threads (and the shared decode/predict callables).
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch

from .measure import Meter, log_timing, summarize
from .decode import random_boxes


def decode_predict_fns(model, feats, clf, ctx, hw_model, ns):
    from ovsam_core.prompts import Prompt
    pred, emb = ctx["pred"], ctx["emb"]
    h, w = emb.frame.orig_hw
    gen = torch.Generator().manual_seed(11)
    fns = {}
    for n in ns:
        boxes = random_boxes(n, hw_model, gen)
        prompts = [Prompt.from_box(*b) for b in random_boxes(n, (h, w), gen).tolist()]

        def dh(boxes=boxes):
            with torch.inference_mode():
                model.head_logits(model.decode(feats, boxes=boxes), clf)

        def pp(prompts=prompts):
            pred.predict(emb, prompts)
        fns[f"decode+head N={n}"] = (n, dh)
        fns[f"Predictor.predict N={n}"] = (n, pp)
    return fns


def bench_threads(args, model, feats, clf, ctx, hw_model) -> Dict[str, Any]:
    """1 vs 2 torch threads, interleaved: small ops suffer from OpenMP barriers under foreign load."""
    fns = decode_predict_fns(model, feats, clf, ctx, hw_model, args.ns)
    fns = {k: v for k, v in fns.items() if k.startswith("decode") or v[0] <= 10}
    default = torch.get_num_threads()
    settings = sorted({default, 1}, reverse=True)
    runs: Dict[str, Dict[int, List[Dict[str, float]]]] = {k: {t: [] for t in settings} for k in fns}
    for k, (n, fn) in fns.items():
        for t in settings:
            torch.set_num_threads(t)
            fn()
    for r in range(args.decode_repeats):
        for k, (n, fn) in fns.items():
            if n >= 100 and r >= 2:
                continue
            for t in settings:
                torch.set_num_threads(t)
                with Meter() as m:
                    fn()
                runs[k][t].append(m.record())
    torch.set_num_threads(default)
    out: Dict[str, Any] = {"threads": settings, "rows": []}
    for k, per in runs.items():
        for t, rr in per.items():
            sm = summarize(rr)
            out["rows"].append({"what": k, "threads": t, **sm})
            log_timing(f"threads={t} {k}", sm)
    return out
