"""Section "malloc": glibc ``mallopt`` settings and page faults of the decode path (run last: it
changes the allocator of the process).
"""
from __future__ import annotations

import gc
from typing import Any, Dict, List

from .measure import Meter, log_timing, summarize
from .threads import decode_predict_fns


def bench_malloc(args, model, feats, clf, ctx, hw_model) -> Dict[str, Any]:
    """glibc malloc: keep freed large blocks in the heap instead of mmap/munmap + page faults.

    Interleaved in one process: each round runs every call under ``default`` (mmap threshold
    32 MiB, trim threshold 64 MiB: where glibc's dynamic threshold ends up after warm-up; larger
    blocks, such as the decoder's (N, 4096, 256) temporaries, are mmap'ed and unmapped on every
    call) and under ``tuned`` (both thresholds 1 GiB). Runs last; RSS stays at its high-water
    mark with ``tuned``.
    """
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError as e:
        return {"error": str(e)}
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    settings = {"default": (32 << 20, 64 << 20), "tuned": (1 << 30, 1 << 30)}

    def apply(name: str) -> bool:
        mmap_t, trim_t = settings[name]
        return libc.mallopt(M_MMAP_THRESHOLD, mmap_t) == 1 and libc.mallopt(M_TRIM_THRESHOLD, trim_t) == 1

    ns = sorted({1, min(10, max(args.ns)), max(args.ns)})
    fns = decode_predict_fns(model, feats, clf, ctx, hw_model, ns)
    out: Dict[str, Any] = {"setting": "default = mallopt(M_MMAP_THRESHOLD=32 MiB, M_TRIM_THRESHOLD=64 MiB); tuned = "
                           "both 1 GiB (= env MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824)",
                           "interleaved": True, "rows": []}
    ok = all(apply(k) for k in settings)
    out["mallopt_ok"] = ok
    if not ok:
        return out
    runs: Dict[str, Dict[str, List[Dict[str, float]]]] = {k: {s_: [] for s_ in settings} for k in fns}
    for k, (n, fn) in fns.items():
        for s_ in settings:
            apply(s_)
            fn()
    for r in range(args.decode_repeats):
        for k, (n, fn) in fns.items():
            if n >= 100 and r >= 2:
                continue
            for s_ in settings:
                apply(s_)
                gc.collect()
                with Meter() as m:
                    fn()
                runs[k][s_].append(m.record())
    apply("tuned")
    for k, per in runs.items():
        n = fns[k][0]
        for s_, rr in per.items():
            sm = summarize(rr)
            sm["ms_per_prompt"] = sm["median_s"] / n * 1000
            out["rows"].append({"what": k, "phase": s_, **sm})
            log_timing(f"malloc {s_}: {k}", sm, f"= {sm['ms_per_prompt']:.1f} ms/prompt")
    return out
