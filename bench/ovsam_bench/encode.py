"""Section "encode": OVSAM fp32 and the bf16 "best" mode against SAM ViT-H fp32, round-robin in one
process, and the staged runner the breakdown uses. Bench-only prototypes (``fold_bn``,
``sdpa_neck``, ``try_compile``): nothing here is product code.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import statistics
import time
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from .measure import Meter, fmt_s, log, log_timing, summarize, time_fn
CL = torch.channels_last
BF16 = torch.bfloat16


class Parts:
    """The three image-side blocks of OVSAM (possibly modified copies) and how to run them."""

    def __init__(self, backbone: nn.Module, neck: nn.Module, fpn: nn.Module, *, autocast: bool,
                 input_cl: bool, neck_dtype: Optional[torch.dtype] = None) -> None:
        self.backbone, self.neck, self.fpn = backbone, neck, fpn
        self.autocast, self.input_cl, self.neck_dtype = autocast, input_cl, neck_dtype


def run_staged(p: Parts, x: torch.Tensor, times: Optional[Dict[str, float]] = None):
    """The same computation as ``OVSAM.extract_features`` (+ ``Predictor``'s casts), timed per block.

    Mirrors ``CLIPResNetBackbone.forward``, ``SAM2CLIPNeck.forward`` and ``FPN.forward``; the
    bench checks once that the fp32 result equals ``extract_features``.
    """
    t = time.perf_counter()

    def tick(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        if times is not None:
            times[name] = times.get(name, 0.0) + (now - t)
        t = now

    ac = torch.autocast("cpu", dtype=BF16) if p.autocast else contextlib.nullcontext()
    with torch.inference_mode(), ac:
        if p.input_cl:
            x = x.contiguous(memory_format=CL)
        bb = p.backbone
        y = bb.avgpool(bb.stem(x))
        tick("backbone.stem")
        feats = []
        for i, layer in enumerate((bb.layer1, bb.layer2, bb.layer3, bb.layer4)):
            y = layer(y)
            feats.append(y)
            tick(f"backbone.layer{i + 1}")
        neck = p.neck
        nctx = torch.autocast("cpu", enabled=False) if p.neck_dtype is not None else contextlib.nullcontext()
        with nctx:
            nf = [f.to(p.neck_dtype) for f in feats] if p.neck_dtype is not None else feats
            z = None
            for i, (embed, f) in enumerate(zip(neck.patch_embeds, nf)):
                w = embed(f) + neck.level_encoding.weight[i]
                z = w if z is None else z + w
            z = z + neck.pos_embed
            tick("neck.patch_embed")
            for i, blk in enumerate(neck.blocks):
                z = blk(z)
                kind = "global" if blk.window_size == 0 else f"win{blk.window_size}"
                tick(f"neck.block{i}.{kind}")
            emb = neck.neck(z.permute(0, 3, 1, 2))
            tick("neck.out")
        fpn = p.fpn(feats)
        tick("fpn")
    if emb.dtype != torch.float32 or any(f.dtype != torch.float32 for f in fpn):
        emb = emb.float()
        fpn = [f.float() for f in fpn]
        c5 = feats[-1].float().contiguous()
    else:
        c5 = feats[-1]
    tick("cast_to_fp32")
    return emb, fpn, c5


def fold_bn(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d (in registration order) into it."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    children = list(module.named_children())
    for (n1, m1), (n2, m2) in zip(children, children[1:]):
        if isinstance(m1, nn.Conv2d) and isinstance(m2, nn.BatchNorm2d):
            setattr(module, n1, fuse_conv_bn_eval(m1, m2))
            setattr(module, n2, nn.Identity())
    for _, child in module.named_children():
        fold_bn(child)
    return module


def sdpa_neck(neck: nn.Module) -> nn.Module:
    """A copy of the neck whose attention runs the core's SDPA kernel
    (``ovsam_core.modeling.rel_pos_attention``, ``kernel="sdpa"``: the decomposed relative
    positions as an additive mask, in query chunks)."""
    from ovsam_core.modeling.rel_pos_attention import use_chunked_attention

    neck = copy.deepcopy(neck)
    use_chunked_attention(neck, kernel="sdpa")
    return neck


def bench_encoders(args, model, sam_enc, x, results, rss) -> Dict[str, Any]:
    """Round-robin: SAM ViT-H fp32, OVSAM fp32, OVSAM best (== Predictor bf16 on CPU)."""
    R = args.repeats
    bb_cl = copy.deepcopy(model.backbone).to(memory_format=CL)
    modes: Dict[str, Callable[[], Any]] = {}
    if sam_enc is not None:
        def sam_fp32():
            with torch.inference_mode():
                return sam_enc(x)
        modes["sam_vit_h_fp32"] = sam_fp32

    def ovsam_fp32():
        with torch.inference_mode():
            return model.extract_features(x)
    modes["ovsam_fp32"] = ovsam_fp32

    def ovsam_best():
        # exactly Predictor._encode's bf16/CPU branch, with the backbone copy in channels_last
        with torch.inference_mode():
            xx = x.contiguous(memory_format=CL)
            with torch.autocast("cpu", dtype=BF16):
                bb, m = model.backbone, model
                m.backbone = bb_cl
                try:
                    f = m.extract_features(xx)
                finally:
                    m.backbone = bb
            return (f.embedding.float(), tuple(t.float() for t in f.fpn), f.c5.float().contiguous())
    modes["ovsam_best"] = ovsam_best

    # correctness: best vs fp32 (random weights: only a sanity check of the plumbing)
    with torch.inference_mode():
        ref = model.extract_features(x)
        e_best, fpn_best, _ = ovsam_best()
        st = run_staged(Parts(model.backbone, model.neck, model.fpn_neck, autocast=False, input_cl=False), x)
    staged_ok = bool(torch.allclose(st[0], ref.embedding, atol=1e-4, rtol=1e-4)
                     and all(torch.allclose(a, b, atol=1e-4, rtol=1e-4) for a, b in zip(st[1], ref.fpn)))
    rel = float((e_best - ref.embedding).norm() / ref.embedding.norm())
    log(f"check: staged fp32 == extract_features: {staged_ok}; best-mode embedding rel. L2 error vs fp32 {rel:.3g}")
    del ref, e_best, fpn_best, st

    warm = {k: (args.sam_warmup if k.startswith("sam") else 1) for k in modes}
    for k, fn in modes.items():
        for _ in range(warm[k]):
            with Meter() as m:
                fn()
            log(f"warm-up {k}: {fmt_s(m.wall)} (foreign {m.foreign:.2f})")
    runs: Dict[str, List[Dict[str, float]]] = {k: [] for k in modes}
    with Meter() as window:
        for r in range(R):
            for k, fn in modes.items():
                gc.collect()
                with Meter() as m:
                    fn()
                runs[k].append(m.record())
                log(f"round {r + 1}/{R} {k}: {fmt_s(m.wall)} cpu {m.cpu:.1f}s foreign {m.foreign:.2f} steal {m.steal:.2f}")
    enc = {"repeats": R, "round_robin": True, "warmup": warm, "staged_equals_extract_features": staged_ok,
           "best_vs_fp32_embedding_rel_l2": rel, "window_foreign": round(window.foreign, 3),
           "window_steal": round(window.steal, 3), "modes": {k: summarize(v) for k, v in runs.items()}}
    if sam_enc is not None:
        s = enc["modes"]["sam_vit_h_fp32"]
        for k in ("ovsam_fp32", "ovsam_best"):
            o = enc["modes"][k]
            paired = [a["s"] / b["s"] for a, b in zip(runs["sam_vit_h_fp32"], runs[k])]
            enc[f"ratio_sam_vit_h_fp32/{k}"] = {
                "median": s["median_s"] / o["median_s"], "min": s["min_s"] / o["min_s"],
                "paired_median": statistics.median(paired), "paired_runs": [round(p, 2) for p in paired],
            }
            log(f"RATIO sam_vit_h_fp32 / {k}: median {s['median_s'] / o['median_s']:.2f}x, "
                f"min {s['min_s'] / o['min_s']:.2f}x, paired {[round(p, 2) for p in paired]}")
    del bb_cl
    gc.collect()
    return enc


def try_compile(args, model, x) -> Dict[str, Any]:
    """Optional: torch.compile (inductor) of the best mode; reports compile time and speed."""
    bb_cl = copy.deepcopy(model.backbone).to(memory_format=CL)

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.neck, self.fpn_neck = bb_cl, model.neck, model.fpn_neck

        def forward(self, x):
            feats = self.backbone(x)
            return self.neck(feats), self.fpn_neck(feats), feats[-1]

    enc = torch.compile(Enc().eval())
    xx = x.contiguous(memory_format=CL)
    res: Dict[str, Any] = {}
    try:
        with Meter() as m, torch.inference_mode(), torch.autocast("cpu", dtype=BF16):
            enc(xx)
        res["first_call_incl_compile_s"] = m.wall
        log(f"torch.compile first call (compile + run): {fmt_s(m.wall)}")

        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=BF16):
                enc(xx)
        res["timing"] = time_fn(run, args.breakdown_repeats, warmup=0)
        log_timing("torch.compile best mode", res["timing"])
    except Exception as e:  # noqa: BLE001
        res["error"] = f"{type(e).__name__}: {e}"[:500]
        log(f"torch.compile failed: {res['error']}")
    return res
