"""Section "text": CLIP text-encoder throughput with and without truncation, and the estimated
one-off cost of embedding the imagenet21k vocabulary.
"""
from __future__ import annotations

import math
from typing import Any, Dict

import numpy as np
import torch
import torch.nn.functional as F

from .encode import BF16
from .measure import Meter, log, log_timing, time_fn


def bench_text(args, text_enc) -> Dict[str, Any]:
    from ovsam_core.text import class_prompts, imagenet21k_classes, lvis_classes

    res: Dict[str, Any] = {}
    lv = lvis_classes().names
    all_prompts = [p for name in lv for syn in class_prompts(name) for p in syn]
    step = max(1, len(all_prompts) // args.text_n)
    prompts = all_prompts[::step][:args.text_n]
    tokens = text_enc.tokenize(prompts)
    lens = tokens.argmax(-1) + 1
    res["lvis_sample"] = {"n_prompts": len(prompts), "of_total_lvis_prompts": len(all_prompts),
                          "token_len_max": int(lens.max()), "token_len_mean": float(lens.float().mean())}
    outs = {}
    for trunc in (True, False):
        def run():
            with torch.inference_mode():
                return text_enc.encode(tokens, truncate=trunc)
        r = time_fn(run, args.text_repeats)
        r["prompts_per_s"] = len(prompts) / r["median_s"]
        outs[trunc] = run()
        key = "encode_truncate" if trunc else "encode_no_truncate"
        res[key] = r
        log_timing(f"TextEncoder.encode {len(prompts)} prompts truncate={trunc}", r,
                   f"= {r['prompts_per_s']:.1f} prompts/s")
    res["truncate_max_abs_diff"] = float((outs[True] - outs[False]).abs().max())
    res["truncate_max_rel_diff"] = float(((outs[True] - outs[False]).norm(dim=-1) / outs[False].norm(dim=-1)).max())
    res["speedup_truncate"] = res["encode_no_truncate"]["median_s"] / res["encode_truncate"]["median_s"]
    log(f"truncation: {res['speedup_truncate']:.2f}x faster, max |diff| {res['truncate_max_abs_diff']:.3g}")

    # prototype: bf16 autocast text tower (changes classifier values slightly)
    def run_bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=BF16):
            return text_enc.encode(tokens, truncate=True).float()
    r = time_fn(run_bf16, args.text_repeats)
    r["prompts_per_s"] = len(prompts) / r["median_s"]
    f16 = run_bf16()
    cos = F.cosine_similarity(f16, outs[True], dim=-1)
    r["min_cosine_vs_fp32"] = float(cos.min())
    res["encode_truncate_bf16_autocast"] = r
    log_timing("TextEncoder.encode truncate=True bf16-autocast (prototype)", r,
               f"= {r['prompts_per_s']:.1f} prompts/s, min cos vs fp32 {float(cos.min()):.5f}")

    # embed_prompts (sorted by length, batches of 256) on a random imagenet21k sample
    names = imagenet21k_classes().names
    syn_counts = [len(s) for s in (class_prompts(n) for n in names)]
    n_total = sum(syn_counts) * 14
    rng = np.random.default_rng(0)
    cls_idx = rng.choice(len(names), size=min(len(names), max(1, args.in21k_sample // 14 + 1)), replace=False)
    sample = [p for i in cls_idx for syn in class_prompts(names[i]) for p in syn][:args.in21k_sample]
    with Meter() as m_tok:
        s_tokens = text_enc.tokenize(sample)
    tok_rate = len(sample) / m_tok.wall
    # exact length distribution of all prompts when affordable (tokenising is ~20k prompts/s)
    if args.quick:
        full_lens = None
    else:
        all21k = [p for n_ in names for syn in class_prompts(n_) for p in syn]
        with Meter() as m_all:
            full_lens = (text_enc.tokenize(all21k).argmax(-1) + 1).sort().values
        tok_rate = len(all21k) / m_all.wall
        del all21k
    s_lens = (s_tokens.argmax(-1) + 1)
    # time batches of 256 sorted prompts of the sample; fit t(L) = a + b * L per batch of 256
    order = torch.argsort(s_lens, stable=True)
    pts = []
    with torch.inference_mode():
        text_enc.encode(s_tokens[order[:64]])
        for s in range(0, len(sample), 256):
            idx = order[s:s + 256]
            if len(idx) < 256:
                break
            with Meter() as m:
                text_enc.encode(s_tokens[idx], truncate=True)
            pts.append((int(s_lens[idx].max()), m.wall, m.foreign))
    log(f"imagenet21k sample batches (max len, s, foreign): {pts}")
    L = np.array([p[0] for p in pts], float)
    T = np.array([p[1] for p in pts], float)
    if len(set(L.tolist())) >= 2:
        b_, a_ = np.polyfit(L, T, 1)
    else:
        a_, b_ = 0.0, T.mean() / L.mean()
    n_batches = math.ceil(n_total / 256)
    if full_lens is not None:
        batch_L = [int(full_lens[min(len(full_lens) - 1, (i + 1) * 256 - 1)]) for i in range(n_batches)]
        basis = "exact token lengths of all prompts"
    else:
        q = s_lens.sort().values
        batch_L = [int(q[min(len(q) - 1, int((i + 1) * 256 / n_total * len(q)))]) for i in range(n_batches)]
        basis = "token-length quantiles of the sample"
    est_encode = float(sum(max(a_ + b_ * l_, 0.0) for l_ in batch_L))
    rate_sample = 256 * len(pts) / float(T.sum()) if pts else float("nan")
    res["imagenet21k"] = {
        "classes": len(names), "synonyms": sum(syn_counts), "templates": 14, "prompts": n_total,
        "sample_prompts": len(sample), "sample_batches": pts, "fit_s_per_batch256": {"a": a_, "b_per_token": b_},
        "batch_length_basis": basis, "tokenize_prompts_per_s": tok_rate,
        "estimated_tokenize_s": n_total / tok_rate,
        "estimated_encode_s_extrapolated": est_encode,
        "estimated_total_s_extrapolated": est_encode + n_total / tok_rate,
        "naive_estimate_s_from_sample_rate": n_total / rate_sample,
        "estimated_no_truncate_s_extrapolated": n_total / res["encode_no_truncate"]["prompts_per_s"],
        "estimated_bf16_autocast_s_extrapolated": est_encode * res["encode_truncate_bf16_autocast"]["median_s"]
        / res["encode_truncate"]["median_s"],
        "extrapolated": True,
    }
    i21 = res["imagenet21k"]
    log(f"imagenet21k: {i21['prompts']} prompts; EXTRAPOLATED encode {i21['estimated_encode_s_extrapolated'] / 60:.1f} min "
        f"+ tokenize {i21['estimated_tokenize_s']:.0f} s (no truncation: {i21['estimated_no_truncate_s_extrapolated'] / 60:.1f} min; "
        f"bf16: {i21['estimated_bf16_autocast_s_extrapolated'] / 60:.1f} min)")
    return res
