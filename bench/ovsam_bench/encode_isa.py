"""Encode 1024² on every ISA: each encoder precision against today's eager fp32 path, per ISA.

The AVX2 case runs on any x86 machine by emulation: the child process starts with
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`` (they must be
set before torch is imported, hence one subprocess per ISA). ``avx512-vnni`` (opt-in, on an
AVX512-BF16 or AMX machine) caps oneDNN at ``AVX512_CORE_VNNI``: a Cascade Lake / Ice Lake
class CPU, int8 dot products without native bf16. Inside a child, every mode runs
round-robin (A B C A B C ...) after one warm-up, so that load changes hit all modes alike; the
report gives ratios of the eager baseline's time to each mode's, from the same child.

Modes (random real-size weights, seed 0; 1x3x1024x1024 input):

* ``eager``: ``extract_features`` as shipped before issue 15 (SAM's attention materialising
  heads x 4096 x 4096 scores), fp32 -- the baseline;
* ``fp32``: today's PyTorch fp32 path (query-chunked exact attention);
* ``bf16``: PyTorch bf16 autocast + channels_last trunk (what ``--dtype bf16`` does);
* ``ov-fp32``, ``ov-bf16`` (AVX512-BF16 / AMX only), ``ov-mixed`` (its int8 neck in OpenVINO
  with AVX512-VNNI / AMX, in PyTorch elsewhere: the report names the engine) and, opt-in,
  ``ov-int8``: the OpenVINO encoder
  (``ovsam_core.runtime``), compiled once (conversion/calibration time reported separately, not
  in the ratios);
* the report marks which one ``--dtype auto`` picks in that child.

Every figure carries the effective ISA and the load average at the time it was taken.

Usage::

    python bench/ovsam_bench/encode_isa.py                     # native + AVX2, 2 rounds
    python bench/ovsam_bench/encode_isa.py --isa avx2 --modes eager,fp32,ov-int8 --repeats 3
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for p in (str(ROOT), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

ISA_ENV = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "avx512-vnni": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"},
}
MODES = ("eager", "fp32", "bf16", "ov-fp32", "ov-bf16", "ov-mixed")
OPT_IN_MODES = ("ov-int8",)  # calibration needs >10 GB at 1024²: --modes ...,ov-int8


# ------------------------------------------------------------------------------- child
def _child(modes: Sequence[str], repeats: int, out: Path, cache: Path, all_modes: bool = False) -> None:
    import copy

    import torch
    from segment_anything.modeling.image_encoder import Attention

    from ovsam_bench.machine import machine_info
    from ovsam_bench.measure import Meter, log
    from ovsam_core.modeling.rel_pos_attention import ChunkedRelPosAttention
    from ovsam_core.runtime import OpenVINOEncoder, OpenVINOUnavailable, cpu_info, resolve_precision
    from ovsam_core.runtime.rewrite import with_replaced
    from ovsam_core.weights.loader import build_model

    info = cpu_info()
    torch.manual_seed(0)
    model = build_model("rn50x16").eval().requires_grad_(False)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))
    attns = [m for m in model.neck.modules() if isinstance(m, Attention)]

    def set_eager(on: bool) -> None:
        for m in attns:
            m.__class__ = Attention if on else ChunkedRelPosAttention

    runners: Dict[str, Any] = {}
    build_s: Dict[str, float] = {}
    skipped: Dict[str, str] = {}
    kernels: Dict[str, Dict[str, int]] = {}
    for mode in modes:
        if mode in ("eager", "fp32"):
            def run(eager=mode == "eager"):
                set_eager(eager)
                try:
                    return model.extract_features(x)
                finally:
                    set_eager(False)
            runners[mode] = run
        elif mode in ("bf16", "ov-bf16") and not info.fast_bf16 and not all_modes:
            skipped[mode] = "bf16 is emulated on this ISA (several times slower than fp32; --all-modes runs it)"
        elif mode == "bf16":
            bb_cl = copy.deepcopy(model.backbone).to(memory_format=torch.channels_last)
            net = with_replaced(model, {"backbone": bb_cl})  # shares every module but the channels_last trunk

            def run(net=net):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    f = net.extract_features(x.contiguous(memory_format=torch.channels_last))
                return type(f)(embedding=f.embedding.float(), fpn=tuple(t.float() for t in f.fpn), c5=f.c5.float())
            runners[mode] = run
        elif mode.startswith("ov-"):
            t = time.perf_counter()
            try:
                enc = OpenVINOEncoder(model, "random-seed0", mode[3:], cache_dir=cache)
            except (OpenVINOUnavailable, ValueError) as e:  # not installed, or not for this CPU: say why
                skipped[mode] = str(e)
                continue
            build_s[mode] = time.perf_counter() - t
            kernels[mode] = _kernel_counts(enc.compiled)
            if enc.neck_engine != "openvino":
                kernels[mode]["neck:" + enc.neck_engine + "-int8"] = 1
            if enc.winograd:
                kernels[mode]["stage1:winograd-3x3"] = 1
            log(f"{mode}: built/loaded in {build_s[mode]:.1f} s (cache {enc.dir}); kernels {kernels[mode]}")
            runners[mode] = lambda enc=enc: enc(x)
    rows: Dict[str, List[Dict[str, Any]]] = {m: [] for m in runners}
    outs: Dict[str, Any] = {}
    with torch.inference_mode():
        for m, fn in runners.items():  # warm-up, and the outputs for the accuracy column
            outs[m] = fn().embedding.clone()
        for r in range(repeats):
            for m, fn in runners.items():
                with Meter() as meter:
                    fn()
                rec = meter.record()
                rec["loadavg_1m"] = round(os.getloadavg()[0], 2)
                rows[m].append(rec)
                log(f"[{info.isa}] round {r} {m}: {rec['s']:.2f} s (foreign {rec['foreign']}, "
                    f"load {rec['loadavg_1m']})")
    ref = outs.get("eager", outs.get("fp32"))
    acc = {m: float((o - ref).norm() / ref.norm()) for m, o in outs.items()}
    auto = resolve_precision("auto", torch.device("cpu"))
    out.write_text(json.dumps({
        "isa": info.isa, "cpu": info.describe(), "machine": machine_info(torch.get_num_threads()),
        "auto": {"name": auto.name, "reason": auto.reason}, "runs": rows, "rel_l2_vs_eager": acc,
        "build_s": build_s, "skipped": skipped, "ov_kernels": kernels}, indent=1))


def _kernel_counts(stages) -> Dict[str, int]:
    """Convolution / FullyConnected / MatMul kernels OpenVINO chose (shows the ISA it really used:
    its oneDNN convolutions honour ``ONEDNN_MAX_CPU_ISA``, its MLAS fp32 GEMMs do not)."""
    counts: Dict[str, int] = {}
    ops = [op for compiled in stages for op in compiled.get_runtime_model().get_ordered_ops()]
    for op in ops:
        info = op.get_rt_info()
        if "layerType" not in info or "primitiveType" not in info:
            continue
        if info["layerType"].astype(str) in ("Convolution", "FullyConnected", "MatMul"):
            k = f"{info['layerType'].astype(str)}:{info['primitiveType'].astype(str)}"
            counts[k] = counts.get(k, 0) + 1
    return counts


# ------------------------------------------------------------------------------- parent
def _summary(res: Dict[str, Any]) -> Dict[str, Dict[str, float]]:
    runs = res["runs"]
    base = runs.get("eager")
    out = {}
    for m, rs in runs.items():
        ts = [r["s"] for r in rs]
        row = {"median_s": statistics.median(ts), "min_s": min(ts),
               "loadavg": statistics.median(r["loadavg_1m"] for r in rs),
               "foreign": statistics.median(r["foreign"] for r in rs)}
        if base:
            bt = [r["s"] for r in base]
            row["speedup_median"] = statistics.median(bt) / row["median_s"]
            row["speedup_min"] = min(bt) / row["min_s"]
            row["speedup_per_round"] = [b / t for b, t in zip(bt, ts)]
        out[m] = row
    return out


def render(results: Dict[str, Dict[str, Any]]) -> str:
    lines = ["| ISA (effective) | mode | median | min | speed-up vs eager fp32 (median / min / per round) | "
             "embedding rel. L2 | load avg | auto |", "|---|---|---|---|---|---|---|---|"]
    for isa, res in results.items():
        summ = _summary(res)
        for m, row in summ.items():
            sp = (f"{row['speedup_median']:.2f}x / {row['speedup_min']:.2f}x / "
                  + ", ".join(f"{v:.2f}" for v in row["speedup_per_round"])) if "speedup_median" in row else "-"
            lines.append(f"| {res['isa']} ({isa}) | {m} | {row['median_s']:.2f} s | {row['min_s']:.2f} s | {sp} | "
                         f"{res['rel_l2_vs_eager'][m]:.1e} | {row['loadavg']:.1f} | "
                         f"{'**auto**' if m == res['auto']['name'] else ''} |")
    notes = []
    for isa, res in results.items():
        notes.append(f"* {isa}: {res['cpu']}; auto picks `{res['auto']['name']}` ({res['auto']['reason']}); "
                     f"one-off build: " + (", ".join(f"{k} {v:.0f} s" for k, v in res["build_s"].items()) or "-")
                     + ("; skipped: " + ", ".join(f"{k} ({v})" for k, v in res["skipped"].items())
                        if res["skipped"] else "")
                     + "".join(f"; {k} kernels: " + ", ".join(f"{n} x{c}" for n, c in v.items())
                               for k, v in res.get("ov_kernels", {}).items()))
    return "\n".join(lines + [""] + notes) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--isa", default="native,avx2", help="comma list of: " + ", ".join(ISA_ENV))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ovsam-bench-openvino",
                    help="OpenVINO IR/blob cache (kept between runs)")
    ap.add_argument("--all-modes", action="store_true", help="also run bf16 where it is emulated (slow)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if args.child:
        _child(modes, args.repeats, args.child, args.cache, args.all_modes)
        return 0
    results = {}
    for isa in args.isa.split(","):
        with tempfile.TemporaryDirectory() as td:
            out = Path(td) / "r.json"
            env = {**os.environ, **ISA_ENV[isa]}
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(out), "--modes", ",".join(modes),
                   "--repeats", str(args.repeats), "--cache", str(args.cache)] + (["--all-modes"] if args.all_modes else [])
            subprocess.run(cmd, env=env, check=True)
            results[isa] = json.loads(out.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d}-cpu-encode-isa"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1))
    md = f"# Encode 1024² per ISA ({_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC)\n\n" + render(results)
    stem.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
