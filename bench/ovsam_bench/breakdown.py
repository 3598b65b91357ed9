"""Section "breakdown": per-block times (backbone stages, neck blocks, FPN) of candidate encode modes
(prototypes; the model code is not changed).
"""
from __future__ import annotations

import copy
import gc
import statistics
from typing import Any, Dict, List

import torch

from .measure import Meter, fmt_s, log, summarize
from .encode import BF16, CL, Parts, fold_bn, run_staged, sdpa_neck


def bench_breakdown(args, model, x) -> Dict[str, Any]:
    """Per-block times of candidate encode modes (prototypes; model code untouched)."""
    R = args.breakdown_repeats
    bb_cl = copy.deepcopy(model.backbone).to(memory_format=CL)
    bb_cl_fold = fold_bn(copy.deepcopy(model.backbone)).to(memory_format=CL)
    neck_cl = copy.deepcopy(model.neck)
    for mod in (*neck_cl.patch_embeds, neck_cl.neck):
        mod.to(memory_format=CL)
    fpn_cl = copy.deepcopy(model.fpn_neck).to(memory_format=CL)
    neck_bf16 = copy.deepcopy(model.neck).to(BF16)
    neck_sdpa = sdpa_neck(model.neck)
    neck_prop = sdpa_neck(neck_bf16)
    for mod in (*neck_prop.patch_embeds, neck_prop.neck):
        mod.to(memory_format=CL)
    sdpa_err = 0.0
    from ovsam_core.modeling.rel_pos_attention import use_chunked_attention

    with torch.inference_mode():  # the SDPA kernel must compute SAM's attention (non-zero rel-pos)
        g = model.cfg.embedding_size
        z = torch.randn(1, g, g, model.cfg.neck_dim)
        for i in sorted({0, len(model.neck.blocks) - 1}):
            blk = copy.deepcopy(model.neck.blocks[i])
            blk.attn.rel_pos_h.normal_(0, 0.1)
            blk.attn.rel_pos_w.normal_(0, 0.1)
            ref_out = blk(z)
            use_chunked_attention(blk, kernel="sdpa")
            sdpa_err = max(sdpa_err, float((ref_out - blk(z)).abs().max() / ref_out.abs().max()))
            del blk, ref_out
    log(f"check: SDPA attention kernel vs the exact chunked attention (fp32, first and last block, random rel-pos): "
        f"max abs diff / max |out| = {sdpa_err:.2g}")
    # fp32 check of the BN folding
    with torch.inference_mode():
        bb_fold_fp32 = fold_bn(copy.deepcopy(model.backbone))
        a = model.backbone(x)[-1]
        b = bb_fold_fp32(x)[-1]
        fold_err = float((a - b).abs().max() / a.abs().max())
        del a, b, bb_fold_fp32
    log(f"check: BN folding max error (relative to max |C5|) {fold_err:.2g}")

    M = model
    modes = {
        "fp32": Parts(M.backbone, M.neck, M.fpn_neck, autocast=False, input_cl=False),
        "fp32+cl(backbone)": Parts(bb_cl, M.neck, M.fpn_neck, autocast=False, input_cl=True),
        "bf16-autocast (no cl)": Parts(M.backbone, M.neck, M.fpn_neck, autocast=True, input_cl=False),
        "best = cl(backbone)+bf16-autocast [Predictor bf16]": Parts(bb_cl, M.neck, M.fpn_neck, autocast=True, input_cl=True),
        "best + cl(all convs)": Parts(bb_cl, neck_cl, fpn_cl, autocast=True, input_cl=True),
        "best + BN folded": Parts(bb_cl_fold, M.neck, M.fpn_neck, autocast=True, input_cl=True),
        "best + neck pure bf16": Parts(bb_cl, neck_bf16, M.fpn_neck, autocast=True, input_cl=True, neck_dtype=BF16),
        "best + SDPA attention in neck": Parts(bb_cl, neck_sdpa, M.fpn_neck, autocast=True, input_cl=True),
        "proposed = BN folded + cl(all) + neck pure bf16 + SDPA": Parts(bb_cl_fold, neck_prop, fpn_cl, autocast=True,
                                                                        input_cl=True, neck_dtype=BF16),
    }
    if args.quick:
        keep = ["fp32", "best = cl(backbone)+bf16-autocast [Predictor bf16]",
                "proposed = BN folded + cl(all) + neck pure bf16 + SDPA"]
        modes = {k: v for k, v in modes.items() if k in keep}
    # accuracy of each mode vs fp32 (random weights: plumbing/precision check only)
    errs = {}
    with torch.inference_mode():
        ref = run_staged(modes["fp32"], x)[0]
        for k, p in modes.items():
            e = run_staged(p, x)[0]  # doubles as warm-up
            errs[k] = float((e - ref).norm() / ref.norm())
    per_mode_runs: Dict[str, List[Dict[str, float]]] = {k: [] for k in modes}
    per_block: Dict[str, List[Dict[str, float]]] = {k: [] for k in modes}
    for r in range(R):
        for k, p in modes.items():
            gc.collect()
            times: Dict[str, float] = {}
            with Meter() as m:
                run_staged(p, x, times)
            per_mode_runs[k].append(m.record())
            per_block[k].append(times)
            log(f"breakdown round {r + 1}/{R} [{k}]: {fmt_s(m.wall)} foreign {m.foreign:.2f} | "
                + ", ".join(f"{n} {v:.2f}" for n, v in times.items()))
    out: Dict[str, Any] = {"repeats": R, "bn_fold_rel_err_fp32": fold_err, "sdpa_rel_max_diff_fp32": sdpa_err,
                           "modes": {}}
    for k in modes:
        blocks = {}
        for name in per_block[k][0]:
            vals = [t[name] for t in per_block[k]]
            blocks[name] = {"median_s": statistics.median(vals), "min_s": min(vals)}
        groups = {"backbone": 0.0, "neck": 0.0, "fpn": 0.0, "cast_to_fp32": 0.0}
        for name, v in blocks.items():
            groups[name.split(".")[0]] += v["median_s"]
        out["modes"][k] = {**summarize(per_mode_runs[k]), "blocks": blocks, "groups_median_s": groups,
                           "embedding_rel_l2_vs_fp32": errs[k]}
    del bb_cl, bb_cl_fold, neck_cl, fpn_cl, neck_bf16, neck_sdpa, neck_prop, modes
    gc.collect()
    return out
