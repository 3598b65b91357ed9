#!/usr/bin/env python
"""OVSAM CPU benchmark: ratios against baselines measured in the same process.

Builds the real-size architectures with random weights (nothing is downloaded) and measures

1. image encode: ``OVSAM.extract_features`` on 1x3x1024x1024 in fp32 and in the "best" mode
   (what ``Predictor(dtype="bf16")`` does on CPU: backbone + input channels_last, bf16 autocast,
   features cast back to fp32) against SAM ViT-H's image encoder in fp32, round-robin so that
   time-varying load hits every mode alike; plus a per-block breakdown (backbone stages, neck
   blocks, FPN) of several candidate modes (prototypes; the model code is not changed);
2. decode + classify on a cached embedding at N box prompts, with random classifiers in the
   shapes of the LVIS preset (1203 x 2 x 768) and of the imagenet21k preset ("20k": 19,167
   classes x 15 synonym slots, 36,260 distinct prototypes), through the model API (the default
   shared-image-side decoder, and the module-by-module reference ``exact=True``) and through
   ``Predictor.predict`` (upsampling to the original size + Python post-processing);
3. that a second ``Predictor.predict`` on the same image does not re-encode;
4. CLIP text-encoder throughput with and without truncation, and an estimate of the one-off
   cost of embedding the imagenet21k vocabulary;
5. peak RSS per phase.

Each section is a module of ``bench/ovsam_bench/`` (``encode``, ``breakdown``, ``decode``,
``predictor``, ``threads``, ``malloc``, ``text``, ``report``; timing helpers in ``measure``,
machine description in ``machine``); this file only parses the CLI, builds the models and runs
the sections in order. Nothing in the package is product code: the encode modes it times
beyond the shipped ones (BN folding, SDPA neck, torch.compile) are prototypes.

Every timed run records the CPU time other processes used during it (``foreign``: share of
all cores, from /proc/stat minus this process's CPU time) and the hypervisor's steal share.

Usage::

    python bench/bench_ovsam.py                 # full run (15-25 min on a 2-core box)
    python bench/bench_ovsam.py --quick --skip-sam   # smoke run (a few minutes)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ovsam_bench.breakdown import bench_breakdown  # noqa: E402
from ovsam_bench.decode import bench_decode, decode_profile, padded_classifier  # noqa: E402
from ovsam_bench.encode import bench_encoders, try_compile  # noqa: E402
from ovsam_bench.machine import machine_info  # noqa: E402
from ovsam_bench.malloc import bench_malloc  # noqa: E402
from ovsam_bench.measure import RSS, Meter, fmt_s, log  # noqa: E402
from ovsam_bench.predictor import bench_predictor  # noqa: E402
from ovsam_bench.report import TARGETS, _finish, assess, write_markdown  # noqa: E402
from ovsam_bench.text import bench_text  # noqa: E402
from ovsam_bench.threads import bench_threads  # noqa: E402


# =============================================================================== main
def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats of the encoder round-robin (default 3; quick 1)")
    ap.add_argument("--breakdown-repeats", type=int, default=None, help="repeats per breakdown mode (default 2; quick 1)")
    ap.add_argument("--decode-repeats", type=int, default=None, help="repeats per decode measurement (default 5; quick 2)")
    ap.add_argument("--text-repeats", type=int, default=None, help="repeats per text measurement (default 3; quick 1)")
    ap.add_argument("--ns", type=str, default=None, help="prompt counts, comma-separated (default 1,10,100; quick 1,10)")
    ap.add_argument("--quick", action="store_true", help="smoke run: small N, 1 repeat, fewer modes")
    ap.add_argument("--skip-sam", action="store_true", help="do not build/time SAM ViT-H (no ratios)")
    ap.add_argument("--skip-breakdown", action="store_true")
    ap.add_argument("--encode-only", action="store_true", help="only section 1 (encoder ratios [+ breakdown]); "
                    "writes <date>-cpu-encode.*")
    ap.add_argument("--skip-text", action="store_true")
    ap.add_argument("--skip-threads", action="store_true", help="skip the 1-vs-2 threads decode experiment")
    ap.add_argument("--skip-malloc", action="store_true", help="skip the glibc mallopt experiment (run last)")
    ap.add_argument("--try-compile", action="store_true", help="also time torch.compile of the best mode (slow to compile)")
    ap.add_argument("--sam-warmup", type=int, default=None, help="untimed SAM passes before timing (default 1; quick 0)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--image", type=str, default="480x640", help="HxW of the Predictor test image (default 480x640)")
    ap.add_argument("--text-n", type=int, default=256, help="LVIS prompts for the text throughput test")
    ap.add_argument("--in21k-sample", type=int, default=None, help="imagenet21k prompts timed for the estimate (default 1024; quick 512)")
    ap.add_argument("--full-vocab-matrix", action="store_true", help="time the 20k folder vocabulary at every N")
    ap.add_argument("--arch", default="rn50x16", help="architecture (default rn50x16 = real size; 'test' is a "
                    "tiny arch to check the script itself, its numbers mean nothing)")
    ap.add_argument("--out", type=str, default=str(ROOT / "bench" / "results"), help="output folder")
    ap.add_argument("--only", type=str, default=None,
                    help="comma-separated sections to run: encode,breakdown,decode,predictor,threads,text,malloc")
    ap.add_argument("--render", type=str, default=None, help="only re-write the markdown of an existing JSON result")
    args = ap.parse_args(argv)
    if args.render:
        jp = Path(args.render)
        data = json.loads(jp.read_text())
        data["targets"] = assess(data)
        jp.write_text(json.dumps(data, indent=1, default=float))
        write_markdown(data, jp.with_suffix(".md"))
        print(f"wrote {jp.with_suffix('.md')}")
        return 0
    q = args.quick
    args.repeats = args.repeats or (1 if q else 3)
    args.breakdown_repeats = args.breakdown_repeats or (1 if q else 2)
    args.decode_repeats = args.decode_repeats or (2 if q else 5)
    args.text_repeats = args.text_repeats or (1 if q else 3)
    args.in21k_sample = args.in21k_sample or (512 if q else 1024)
    args.sam_warmup = (0 if q else 1) if args.sam_warmup is None else args.sam_warmup
    args.ns = [int(v) for v in (args.ns or ("1,10" if q else "1,10,100")).split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    secs = set(args.only.split(",")) if args.only else {"encode", "breakdown", "decode", "predictor", "threads",
                                                          "text", "malloc"}
    if args.encode_only:
        secs &= {"encode", "breakdown"}
    if args.skip_breakdown:
        secs.discard("breakdown")
    if args.skip_text:
        secs.discard("text")
    if args.skip_threads:
        secs.discard("threads")
    if args.skip_malloc:
        secs.discard("malloc")
    args.sections = sorted(secs)
    ih, iw = (int(v) for v in args.image.lower().split("x"))

    tmp = Path(tempfile.mkdtemp(prefix="ovsam-bench-"))
    os.environ["OVSAM_CACHE_DIR"] = str(tmp / "cache")  # classifier cache of this run only
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.now(_dt.timezone.utc)
    partial = "" if args.only is None and not args.encode_only else "-" + "+".join(args.sections)
    stem = started.strftime("%Y-%m-%d") + ("-cpu-quick" if q else "-cpu") + partial
    res: Dict[str, Any] = {"started": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
                           "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                           "args": vars(args).copy(), "targets_def": TARGETS}
    res["machine"] = machine_info(args.threads)
    log(f"machine: {json.dumps(res['machine'])}")
    rss = RSS()
    whole = Meter().__enter__()

    from ovsam_core.config import ARCHS
    cfg = ARCHS[args.arch]
    from ovsam_core.modeling import OVSAM
    from ovsam_core.text import TextEncoder, lvis_classes
    from ovsam_core.weights.loader import LoadedModel
    from ovsam_core.weights.registry import get_model_spec

    torch.manual_seed(0)
    rss.start()
    with Meter() as m:
        model = OVSAM(cfg).eval().requires_grad_(False)
    res["build_ovsam_s"] = m.wall
    log(f"built OVSAM (random) in {fmt_s(m.wall)}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params")
    rss.end("build_ovsam")

    S = set(args.sections)
    sam_enc = None
    if not args.skip_sam and "encode" in S:
        rss.start()
        from segment_anything import sam_model_registry
        with Meter() as m:
            sam = sam_model_registry["vit_h"](checkpoint=None)
            sam_enc = sam.image_encoder.eval().requires_grad_(False)
            del sam
        gc.collect()
        res["build_sam_vit_h_s"] = m.wall
        log(f"built SAM ViT-H image encoder in {fmt_s(m.wall)}: {sum(p.numel() for p in sam_enc.parameters()) / 1e6:.1f} M params")
        rss.end("build_sam_vit_h")

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, cfg.image_size, cfg.image_size, generator=gen) * 50.0  # SAM-normalised range (0-255 scale stats)

    if "encode" in S:
        rss.start()
        res["encode"] = bench_encoders(args, model, sam_enc, x, res, rss)
        rss.end("encode_round_robin")
    if sam_enc is not None:
        del sam_enc
        gc.collect()

    if "breakdown" in S:
        rss.start()
        res["breakdown"] = bench_breakdown(args, model, x)
        rss.end("encode_breakdown")
    if args.try_compile:
        rss.start()
        res["compile"] = try_compile(args, model, x)
        rss.end("torch_compile")

    if not S & {"decode", "predictor", "threads", "text", "malloc"}:
        return _finish(args, res, rss, whole, out_dir, stem)

    # ------------------------------------------------------------------ decode
    with torch.inference_mode():
        feats = model.extract_features(x)
    lv = lvis_classes()
    d = cfg.clip_embed_dim
    # random prototypes in the shapes of the real presets: LVIS (1203 classes, 2 synonym slots) and
    # imagenet21k (19,167 classes, 15 slots, 36,260 distinct synonyms), padded like the recipe
    from ovsam_core.text.classifier import synonym_counts
    from ovsam_core.vocabulary import load_vocabulary
    clfs = {"lvis": padded_classifier(synonym_counts(lv.names), d, gen),
            "20k": padded_classifier(synonym_counts(load_vocabulary("imagenet21k").names), d, gen)}
    base_masks = {"lvis": lv.base_mask(), "20k": torch.rand(clfs["20k"].shape[0], generator=gen) < 0.7}
    scale = cfg.image_size / max(ih, iw)
    hw_model = (round(ih * scale), round(iw * scale))
    if "decode" in S:
        rss.start()
        res["decode"] = bench_decode(args, model, feats, clfs, base_masks, hw_model)
        nprof = max(args.ns)
        res["decode"]["profile_n"] = nprof
        res["decode"]["profile"] = decode_profile(model, feats, nprof, hw_model)
        log(f"decode profile N={nprof}: {res['decode']['profile']}")
        rss.end("decode")

    # ------------------------------------------------------------------ predictor
    text_enc = TextEncoder(cfg).eval().requires_grad_(False)
    ctx: Dict[str, Any] = {}
    if S & {"predictor", "threads", "malloc"}:
        rss.start()
        loaded = LoadedModel(spec=get_model_spec("ovsam-lvis"), model=model, text_encoder=text_enc,
                             classifier=clfs["lvis"], weights_id="random")
        image = np.random.default_rng(0).integers(0, 256, size=(ih, iw, 3), dtype=np.uint8)
        pres = bench_predictor(args, loaded, image, clfs["20k"], tmp, ctx, full="predictor" in S)
        if "predictor" in S:
            res["predictor"] = pres
        rss.end("predictor")
    if "threads" in S:
        res["threads"] = bench_threads(args, model, feats, clfs["lvis"], ctx, hw_model)

    if "text" in S:
        rss.start()
        res["text"] = bench_text(args, text_enc)
        rss.end("text")

    if "malloc" in S:
        rss.start()
        res["malloc"] = bench_malloc(args, model, feats, clfs["lvis"], ctx, hw_model)
        rss.end("malloc_experiment")

    return _finish(args, res, rss, whole, out_dir, stem)


if __name__ == "__main__":
    raise SystemExit(main())
