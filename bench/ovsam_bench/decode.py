"""Section "decode": decode + classify on a cached embedding at N box prompts, LVIS and 20k-shaped
random classifiers, default decoder vs ``exact=True``.
"""
from __future__ import annotations

import gc
import math
from typing import Any, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F

from .measure import log_timing, time_fn


def random_boxes(n: int, hw_model: Tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """N random boxes (x0, y0, x1, y1) inside the resized image area of the model frame."""
    h, w = hw_model
    side = torch.exp(torch.empty(n).uniform_(math.log(24), math.log(min(h, w) * 0.9), generator=gen))
    aspect = torch.exp(torch.empty(n).uniform_(-0.7, 0.7, generator=gen))
    bw = (side * aspect.sqrt()).clamp(8, w - 1)
    bh = (side / aspect.sqrt()).clamp(8, h - 1)
    x0 = torch.rand(n, generator=gen) * (w - bw)
    y0 = torch.rand(n, generator=gen) * (h - bh)
    return torch.stack([x0, y0, x0 + bw, y0 + bh], dim=1)


def unit_classifier(c: int, p: int, d: int, gen: torch.Generator) -> torch.Tensor:
    return F.normalize(torch.randn(c, p, d, generator=gen), dim=-1)


def padded_classifier(counts: Sequence[int], d: int, gen: torch.Generator) -> torch.Tensor:
    """(C, max(counts), d) unit prototypes; slots past a class's count repeat its first (the recipe)."""
    c = torch.tensor(counts)
    w = unit_classifier(len(counts), int(c.max()), d, gen)
    real = torch.arange(w.shape[1])[None] < c[:, None]
    return torch.where(real[..., None], w, w[:, :1]).contiguous()


def bench_decode(args, model, feats, clfs: Dict[str, torch.Tensor], base_masks, hw_model) -> Dict[str, Any]:
    """Model API on a cached embedding: ``decode`` (shared image side, the default), the module-by-
    module reference (``exact=True``), and recognition with packed classifiers (as the Predictor)."""
    from ovsam_core.modeling.ovsam_head import PackedClassifier

    gen = torch.Generator().manual_seed(1)
    packed = {k: PackedClassifier.pack(c) for k, c in clfs.items()}
    out: Dict[str, Any] = {"ns": args.ns, "repeats": args.decode_repeats, "rows": [],
                           "classifiers": {k: {"classes": c.shape[0], "synonym_slots": c.shape[1],
                                               "distinct_prototypes": packed[k].prototypes.shape[0]}
                                           for k, c in clfs.items()}}
    for n in args.ns:
        boxes = random_boxes(n, hw_model, gen)
        reps = args.decode_repeats if n < 100 else max(2, args.decode_repeats // 2)

        def dec():
            with torch.inference_mode():
                return model.decode(feats, boxes=boxes)
        r_dec = time_fn(dec, reps)
        log_timing(f"decode N={n}", r_dec, f"= {r_dec['median_s'] / n * 1000:.1f} ms/prompt")
        out["rows"].append({"what": "decode", "n": n, "clf": "-", **r_dec, "ms_per_prompt": r_dec["median_s"] / n * 1000})

        def dec_exact():
            with torch.inference_mode():
                return model.decode(feats, boxes=boxes, exact=True)
        r = time_fn(dec_exact, reps if n < 100 else 1)
        with torch.inference_mode():
            ho, ref = model.decode(feats, boxes=boxes), dec_exact()
        r["max_abs_diff_vs_default"] = float((ho.mask_logits - ref.mask_logits).abs().max())
        log_timing(f"decode exact=True (SAM modules, reference) N={n}", r,
                   f"= {r['median_s'] / n * 1000:.1f} ms/prompt; max |diff| {r['max_abs_diff_vs_default']:.2g}")
        out["rows"].append({"what": "decode exact=True (reference)", "n": n, "clf": "-", **r,
                            "ms_per_prompt": r["median_s"] / n * 1000})
        for cname in clfs:
            clf = packed[cname]

            def head():
                with torch.inference_mode():
                    return model.head_logits(ho, clf)
            r = time_fn(head, max(reps, 5))
            log_timing(f"head_logits only N={n} {cname}", r)
            out["rows"].append({"what": "head_logits", "n": n, "clf": cname, **r})

            def fused():
                with torch.inference_mode():
                    return model.fused_logits(feats, ho, clf, boxes, base_masks[cname], None)
            r = time_fn(fused, max(reps, 3))
            log_timing(f"fused_logits only N={n} {cname}", r)
            out["rows"].append({"what": "fused_logits", "n": n, "clf": cname, **r})

            def dec_head():
                with torch.inference_mode():
                    return model.head_logits(model.decode(feats, boxes=boxes), clf)
            r = time_fn(dec_head, reps)
            log_timing(f"decode+head N={n} {cname}", r, f"= {r['median_s'] / n * 1000:.1f} ms/prompt")
            out["rows"].append({"what": "decode+head", "n": n, "clf": cname, **r,
                                "ms_per_prompt": r["median_s"] / n * 1000})

            def dec_fused():
                with torch.inference_mode():
                    o = model.decode(feats, boxes=boxes)
                    return model.fused_logits(feats, o, clf, boxes, base_masks[cname], None)
            r = time_fn(dec_fused, reps)
            log_timing(f"decode+fused N={n} {cname}", r, f"= {r['median_s'] / n * 1000:.1f} ms/prompt")
            out["rows"].append({"what": "decode+fused", "n": n, "clf": cname, **r,
                                "ms_per_prompt": r["median_s"] / n * 1000})
        gc.collect()
    return out


def decode_profile(model, feats, n: int, hw_model) -> Dict[str, float]:
    """Where a decode call's time goes at N prompts (one call, torch profiler, CPU self time)."""
    from torch.profiler import ProfilerActivity, profile

    boxes = random_boxes(n, hw_model, torch.Generator().manual_seed(2))
    with torch.inference_mode():
        model.decode(feats, boxes=boxes)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.decode(feats, boxes=boxes)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    return {e.key: round(e.self_cpu_time_total / 1e6, 4) for e in rows}
