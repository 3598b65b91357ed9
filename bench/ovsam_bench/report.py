"""Section "report": the targets, their assessment and the Markdown/JSON result files.
"""
from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any, Dict, List

from .measure import fmt_s, log


TARGETS = {
    "encode_best_ratio": 6.0,           # sam_vit_h_fp32 / ovsam_best >= 6
    "ms_per_prompt_n100": 25.0,          # decode + classify amortised at N = 100
    "ms_single_prompt": 60.0,            # decode + classify, N = 1
    "extra_20k_ms_per_call": 50.0,       # 20k vocabulary vs LVIS, per call
    "text_truncate_speedup": 3.0,        # text tower, truncated vs full context
}


def _row(rows, **kw):
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def assess(res: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Targets, judged on the median and (as the less contended estimate) on the best run."""
    out: List[Dict[str, Any]] = []

    def add(target, med, best, limit, unit, foreign, applicable=True, higher_is_better=False):
        ok = (lambda v: v >= limit) if higher_is_better else (lambda v: v <= limit)
        out.append({"target": target, "value": f"{med:.1f}{unit}", "value_min": f"{best:.1f}{unit}",
                    "foreign": foreign, "met": ok(med) if applicable else None,
                    "met_min": ok(best) if applicable else None})

    enc = res.get("encode", {})
    rk = "ratio_sam_vit_h_fp32/ovsam_best"
    if rk in enc:
        fo = max(enc["modes"]["sam_vit_h_fp32"]["foreign_median"], enc["modes"]["ovsam_best"]["foreign_median"])
        add("encode: SAM-H fp32 / OVSAM best >= 6x (best run: ratio of mins)", enc[rk]["median"], enc[rk]["min"],
            TARGETS["encode_best_ratio"], "x", fo, higher_is_better=True)
    dec = res.get("decode", {}).get("rows", [])
    ns = res.get("decode", {}).get("ns", [])
    if dec:
        nmax = max(ns)
        for what in ("decode+head", "decode+fused"):
            r = _row(dec, what=what, n=nmax, clf="lvis")
            if r:
                add(f"model {what} LVIS: <= 25 ms/prompt at N={nmax}", r["median_s"] / nmax * 1000,
                    r["min_s"] / nmax * 1000, 25, " ms", r["foreign_median"], applicable=nmax >= 100)
            r = _row(dec, what=what, n=1, clf="lvis")
            if r:
                add(f"model {what} LVIS: <= 60 ms single prompt", r["median_s"] * 1000, r["min_s"] * 1000, 60,
                    " ms", r["foreign_median"])
        for n in ns:
            a = _row(dec, what="head_logits", n=n, clf="lvis")
            b = _row(dec, what="head_logits", n=n, clf="20k")
            if a and b:
                add(f"model head_logits: 20k vs LVIS extra <= 50 ms per call (N={n})",
                    (b["median_s"] - a["median_s"]) * 1000, (b["min_s"] - a["min_s"]) * 1000, 50, " ms",
                    max(a["foreign_median"], b["foreign_median"]))
    pr = res.get("predictor", {}).get("rows", [])
    if pr:
        nmax = max(r["n"] for r in pr)
        r = _row(pr, n=nmax, vocab="lvis", mode="head")
        if r:
            add(f"Predictor.predict LVIS head: <= 25 ms/prompt at N={nmax}", r["median_s"] / nmax * 1000,
                r["min_s"] / nmax * 1000, 25, " ms", r["foreign_median"], applicable=nmax >= 100)
        r = _row(pr, n=1, vocab="lvis", mode="head")
        if r:
            add("Predictor.predict LVIS head: <= 60 ms single prompt", r["median_s"] * 1000, r["min_s"] * 1000,
                60, " ms", r["foreign_median"])
        for vname in ("20k-list(cached)", "20k-folder"):
            for n in sorted({r["n"] for r in pr}):
                a = _row(pr, n=n, vocab="lvis", mode="head")
                b = _row(pr, n=n, vocab=vname, mode="head")
                if a and b:
                    add(f"Predictor.predict {vname} vs LVIS extra <= 50 ms per call (N={n})",
                        (b["median_s"] - a["median_s"]) * 1000, (b["min_s"] - a["min_s"]) * 1000, 50, " ms",
                        max(a["foreign_median"], b["foreign_median"]))
    tx = res.get("text", {})
    if "speedup_truncate" in tx:
        a, b = tx["encode_no_truncate"], tx["encode_truncate"]
        add("text: truncation >= 3x faster than the full context", tx["speedup_truncate"],
            a["min_s"] / b["min_s"], TARGETS["text_truncate_speedup"], "x",
            max(a["foreign_median"], b["foreign_median"]), higher_is_better=True)
        v = f"max abs diff {tx['truncate_max_abs_diff']:.3g}"
        same = tx["truncate_max_abs_diff"] == 0
        out.append({"target": "text: truncated = full context, bit-identical", "value": v, "value_min": v,
                    "foreign": b["foreign_median"], "met": same, "met_min": same})
    rp = res.get("predictor", {}).get("repeat_predict")
    if rp:
        v = f"encoder_calls {rp['encoder_calls_after_first']} -> {rp['encoder_calls_after_second']}"
        out.append({"target": "second predict on the same image does not re-encode", "value": v, "value_min": v,
                    "foreign": rp["second_foreign"], "met": rp["ok"], "met_min": rp["ok"]})
    return out


def _t(r: Dict[str, Any]) -> str:
    return f"{fmt_s(r['median_s'])} | {fmt_s(r['min_s'])} | {r.get('foreign_median', float('nan')):.2f}"


def write_markdown(res: Dict[str, Any], path: Path) -> None:
    L: List[str] = []
    mi = res["machine"]
    L += [f"# OVSAM CPU benchmark, {res['started']}", "",
          f"Command: `{res['command']}`; total wall {res['total_wall_s'] / 60:.1f} min.", "",
          "## Machine", "",
          f"* CPU: {mi['cpu_model']}, {mi['logical_cpus']} logical CPUs, {mi['mem_gb']} GiB, virtualised: {mi['virtualised']}",
          f"* ISA: {', '.join(mi['isa'])}; torch CPU capability {mi['torch_cpu_capability']}",
          f"* torch {mi['torch']}, torchvision {mi['torchvision']}, open_clip {mi['open_clip']}, "
          f"segment_anything {mi['segment_anything']}, Python {mi['python']}; threads {mi['threads']}",
          f"* Foreign load over the whole run: {res['foreign_whole_run']:.2f} of the machine "
          f"(steal {res['steal_whole_run']:.2f}). `foreign` = CPU time of other processes during a "
          "measurement / (wall x cores), from /proc/stat minus this process's CPU time. Treat wall "
          "times with foreign > 0.1 as upper bounds.", "",
          "Weights are random (speed does not depend on their values). Medians of the timed repeats; "
          "min is the best run.", ""]
    if res.get("notes"):
        L += [f"Note: {res['notes']}", ""]
    L += ["## Targets", "",
          "Judged on the median and on the best run (min). With foreign load the min is the better estimate "
          "of an idle machine; differences of two medians taken at different load levels are noise.", "",
          "| target | median | met | best run | met | foreign |", "|---|---|---|---|---|---|"]
    yn = lambda m: "n/a (N=100 not run)" if m is None else ("yes" if m else "**no**")
    for a in res["targets"]:
        L.append(f"| {a['target']} | {a['value']} | {yn(a['met'])} | {a.get('value_min', '')} | "
                 f"{yn(a.get('met_min'))} | {a.get('foreign', float('nan')):.2f} |")
    L.append("")
    enc = res.get("encode")
    if enc:
        L += ["## 1. Image encode (1x3x1024x1024), round-robin in one process", "",
              "| mode | median | min | foreign (median) | runs s | CPU-s (median) |", "|---|---|---|---|---|---|"]
        for k, r in enc["modes"].items():
            L.append(f"| {k} | {fmt_s(r['median_s'])} | {fmt_s(r['min_s'])} | {r['foreign_median']:.2f} | "
                     f"{', '.join(f'{x:.2f}' for x in r['runs_s'])} | {r['cpu_s_median']:.1f} |")
        L.append("")
        for k in ("ovsam_fp32", "ovsam_best"):
            rk = f"ratio_sam_vit_h_fp32/{k}"
            if rk in enc:
                v = enc[rk]
                L.append(f"* **sam_vit_h_fp32 / {k} = {v['median']:.2f}x** (of medians); {v['min']:.2f}x of mins; "
                         f"per round {v['paired_runs']}")
        sm = enc["modes"].get("sam_vit_h_fp32")
        if sm:
            L.append("* contention check, ratio of this process's CPU-seconds (medians): " + ", ".join(
                f"sam_vit_h_fp32 / {k} = {sm['cpu_s_median'] / enc['modes'][k]['cpu_s_median']:.2f}x"
                for k in ("ovsam_fp32", "ovsam_best") if k in enc["modes"])
                + " (spin-waiting OpenMP threads inflate CPU-s under load, more so for the short bf16 kernels)")
        L += [f"* best mode = `Predictor(dtype='bf16')` on CPU (backbone + input channels_last, bf16 autocast over "
              f"`extract_features`, features cast to fp32); embedding rel. L2 error vs fp32 "
              f"{enc['best_vs_fp32_embedding_rel_l2']:.3g} (random weights).", ""]
    bd = res.get("breakdown")
    if bd:
        names = list(next(iter(bd["modes"].values()))["blocks"].keys())
        L += ["### Per-block breakdown (median s per block; prototypes, model code unchanged)", "",
              "| block | " + " | ".join(bd["modes"].keys()) + " |", "|---|" + "---|" * len(bd["modes"])]
        for n in names:
            L.append(f"| {n} | " + " | ".join(f"{m['blocks'][n]['median_s']:.2f}" for m in bd["modes"].values()) + " |")
        for g in ("backbone", "neck", "fpn"):
            L.append(f"| **{g} total** | " + " | ".join(f"**{m['groups_median_s'][g]:.2f}**" for m in bd["modes"].values()) + " |")
        L.append("| **total (median of runs)** | " + " | ".join(f"**{m['median_s']:.2f}**" for m in bd["modes"].values()) + " |")
        L.append("| foreign (median) | " + " | ".join(f"{m['foreign_median']:.2f}" for m in bd["modes"].values()) + " |")
        L.append("| embedding rel. L2 vs fp32 | " + " | ".join(f"{m['embedding_rel_l2_vs_fp32']:.2g}" for m in bd["modes"].values()) + " |")
        L.append("")
        f32 = bd["modes"]["fp32"]["median_s"] if "fp32" in bd["modes"] else None
        if f32:
            L.append("Speed-up over fp32 within this breakdown: " + ", ".join(
                f"{k}: {f32 / m['median_s']:.2f}x" for k, m in bd["modes"].items()) + ".")
            rk = "ratio_sam_vit_h_fp32/ovsam_fp32"
            if enc and rk in enc:
                r0 = enc[rk]["median"]
                L.append(f"Derived (not measured side by side): SAM-H fp32 / mode = (SAM-H / ovsam_fp32 from the round-robin, "
                         f"{r0:.2f}x) x (fp32 / mode from this breakdown): " + ", ".join(
                             f"{k}: {r0 * f32 / m['median_s']:.1f}x" for k, m in bd["modes"].items()) + ".")
            L.append("")
    comp = res.get("compile")
    if comp:
        L += [f"torch.compile: {json.dumps({k: v for k, v in comp.items() if k != 'timing'})}"
              + (f"; compiled best mode median {fmt_s(comp['timing']['median_s'])}" if "timing" in comp else ""), ""]
    dec = res.get("decode")
    if dec:
        L += ["## 2. Decode + classify on a cached embedding (model API, one call for all N boxes)", "",
              "| what | N | classifier | median | min | foreign | ms / prompt |", "|---|---|---|---|---|---|---|"]
        for r in dec["rows"]:
            L.append(f"| {r['what']} | {r['n']} | {r['clf']} | {fmt_s(r['median_s'])} | {fmt_s(r['min_s'])} | "
                     f"{r['foreign_median']:.2f} | {r['median_s'] / r['n'] * 1000:.1f} |")
        L.append("")
        for r in dec["rows"]:
            if "vs_fp32" in r:
                L.append(f"* bf16 decoder N={r['n']}: {r['vs_fp32']}")
        L.append("")
        if dec.get("profile"):
            L += [f"Decode profile (N={dec['profile_n']}, top ops by self CPU s): "
                  + ", ".join(f"`{k}` {v:.3f}" for k, v in dec["profile"].items()), ""]
    pr = res.get("predictor")
    if pr:
        rp = pr["repeat_predict"]
        L += [f"## 2b/3. `Predictor.predict` (image {pr['image_hw'][1]}x{pr['image_hw'][0]}, fp32 embedding, masks upsampled to the image)", "",
              "| N | vocabulary | mode | median | min | foreign | ms / prompt |", "|---|---|---|---|---|---|---|"]
        for r in pr["rows"]:
            L.append(f"| {r['n']} | {r['vocab']} | {r['mode']} | {fmt_s(r['median_s'])} | {fmt_s(r['min_s'])} | "
                     f"{r['foreign_median']:.2f} | {r['ms_per_prompt']:.1f} |")
        po, pb = pr["postprocess_only"], pr["postprocess_batched_prototype"]
        L += ["",
              f"* post-processing alone (per-prompt upsample + stats, N={po['n']}): {fmt_s(po['median_s'])} "
              f"= {po['ms_per_prompt']:.1f} ms/prompt; batched prototype {fmt_s(pb['median_s'])} = {pb['ms_per_prompt']:.1f} ms/prompt",
              f"* loading the 20k `vocab build` folder (the Predictor reads it once, again only if it changes): "
              f"{fmt_s(pr['bundle_load_20k']['median_s'])}",
              f"* **repeat predict**: first call {fmt_s(rp['first_call_s'])} (encoder_calls={rp['encoder_calls_after_first']}), "
              f"second call {fmt_s(rp['second_call_s'])} (encoder_calls={rp['encoder_calls_after_second']}) -> "
              f"{'no re-encode' if rp['ok'] else 'RE-ENCODED'}", ""]
    if pr and pr.get("per_call_overheads"):
        L += ["Per-call vocabulary overheads inside `predict`:", ""]
        for k, r in pr["per_call_overheads"].items():
            L.append(f"* {k}: {fmt_s(r['median_s'])} (foreign {r['foreign_median']:.2f})")
        L.append("")
    th = res.get("threads")
    if th:
        L += ["### torch threads: 1 vs default (interleaved)", "", "| what | threads | median | min | foreign |", "|---|---|---|---|---|"]
        for r in th["rows"]:
            L.append(f"| {r['what']} | {r['threads']} | {fmt_s(r['median_s'])} | {fmt_s(r['min_s'])} | {r['foreign_median']:.2f} |")
        L.append("")
    ma = res.get("malloc")
    if ma and "rows" in ma:
        L += [f"### glibc allocator experiment (run last{', interleaved' if ma.get('interleaved') else ', before then after'}): {ma['setting']}", "",
              "| what | allocator | median | min | foreign | ms / prompt |", "|---|---|---|---|---|---|"]
        for r in ma["rows"]:
            L.append(f"| {r['what']} | {r['phase']} | {fmt_s(r['median_s'])} | {fmt_s(r['min_s'])} | "
                     f"{r['foreign_median']:.2f} | {r['ms_per_prompt']:.1f} |")
        L.append("")
    tx = res.get("text")
    if tx:
        s = tx["lvis_sample"]
        L += ["## 4. CLIP text encoder (RN50x16 text tower, fp32)", "",
              f"{s['n_prompts']} LVIS prompts (every k-th of {s['of_total_lvis_prompts']}), one batch; token length "
              f"max {s['token_len_max']}, mean {s['token_len_mean']:.1f}.", "",
              "| mode | median | min | foreign | prompts/s |", "|---|---|---|---|---|"]
        for k in ("encode_truncate", "encode_no_truncate", "encode_truncate_bf16_autocast"):
            r = tx[k]
            L.append(f"| {k} | {fmt_s(r['median_s'])} | {fmt_s(r['min_s'])} | {r['foreign_median']:.2f} | {r['prompts_per_s']:.1f} |")
        i21 = tx["imagenet21k"]
        L += ["", f"* truncation speed-up {tx['speedup_truncate']:.2f}x; max abs diff truncate vs full context "
              f"{tx['truncate_max_abs_diff']:.3g} (max relative {tx['truncate_max_rel_diff']:.2g})",
              f"* bf16 autocast (prototype): min cosine vs fp32 {tx['encode_truncate_bf16_autocast']['min_cosine_vs_fp32']:.5f}",
              f"* imagenet21k: {i21['classes']} classes, {i21['synonyms']} synonyms x 14 templates = **{i21['prompts']:,} prompts**. "
              f"**Extrapolated** (from {len(i21['sample_batches'])} timed batches of 256 sorted prompts, t(L) fit, "
              f"{i21['batch_length_basis']}): encode **{i21['estimated_encode_s_extrapolated'] / 60:.0f} min** + tokenise "
              f"{i21['estimated_tokenize_s']:.0f} s = {i21['estimated_total_s_extrapolated'] / 3600:.2f} h; without truncation "
              f"~{i21['estimated_no_truncate_s_extrapolated'] / 3600:.1f} h; with bf16 autocast ~{i21['estimated_bf16_autocast_s_extrapolated'] / 60:.0f} min.", ""]
    L += ["## 5. Peak RSS per phase", "", "| phase | peak MB | RSS at end MB |", "|---|---|---|"]
    for k, v in res["rss"]["phases"].items():
        L.append(f"| {k} | {v['peak_mb']:.0f} | {v['rss_end_mb']:.0f} |")
    L += ["", f"Overall peak RSS: {res['rss']['overall_peak_mb']:.0f} MB "
          f"(per-phase peaks are phase-local: {res['rss']['phase_local']}).", ""]
    path.write_text("\n".join(L))


def _finish(args, res, rss, whole, out_dir: Path, stem: str) -> int:
    whole.__exit__(None, None, None)
    res["total_wall_s"] = whole.wall
    res["foreign_whole_run"] = round(whole.foreign, 3)
    res["steal_whole_run"] = round(whole.steal, 3)
    res["rss"] = {"phases": rss.phases, "overall_peak_mb": round(rss.overall_peak_mb, 1),
                  "ru_maxrss_mb_at_end": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "phase_local": rss.can_reset}
    res["targets"] = assess(res)
    for a in res["targets"]:
        log(f"TARGET {a['target']}: median {a['value']} -> {'n/a' if a['met'] is None else ('met' if a['met'] else 'NOT met')}; "
            f"best run {a['value_min']} -> {'n/a' if a['met_min'] is None else ('met' if a['met_min'] else 'NOT met')} "
            f"(foreign {a['foreign']:.2f})")
    jpath = out_dir / f"{stem}.json"
    mpath = out_dir / f"{stem}.md"
    jpath.write_text(json.dumps(res, indent=1, default=float))
    write_markdown(res, mpath)
    log(f"wrote {jpath} and {mpath}")
    return 0
