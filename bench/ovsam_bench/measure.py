"""Timing with the other processes' CPU share (``foreign``), and peak RSS per phase."""
from __future__ import annotations

import datetime as _dt
import math
import os
import resource
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Tuple


_CLK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


def _proc_stat() -> Tuple[float, float]:
    """(busy seconds of all CPUs, steal seconds) since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return float("nan"), float("nan")
    user, nice, system, idle, iowait, irq, softirq = v[:7]
    steal = v[7] if len(v) > 7 else 0
    return (user + nice + system + irq + softirq) / _CLK, steal / _CLK


class Meter:
    """Wall time, this process's CPU time and the other processes' CPU share over an interval."""

    def __enter__(self) -> "Meter":
        self._busy0, self._steal0 = _proc_stat()
        self._cpu0 = time.process_time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._t0
        self.cpu = time.process_time() - self._cpu0
        busy, steal = _proc_stat()
        cap = max(self.wall, 1e-9) * NCPU
        self.foreign_cpu = max(0.0, (busy - self._busy0) - self.cpu)
        # /proc/stat has a 1/CLK_TCK resolution: intervals under ~0.2 s are noisy.
        self.foreign = min(1.0, self.foreign_cpu / cap)
        self.steal = (steal - self._steal0) / cap

    def record(self) -> Dict[str, float]:
        return {"s": round(self.wall, 6), "cpu_s": round(self.cpu, 4),
                "foreign": round(self.foreign, 3), "steal": round(self.steal, 3)}


def summarize(runs: List[Dict[str, float]], window: Optional[Meter] = None) -> Dict[str, Any]:
    ts = [r["s"] for r in runs]
    out = {
        "median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts),
        "runs_s": [round(t, 4) for t in ts],
        "foreign_runs": [r["foreign"] for r in runs],
        "foreign_median": statistics.median(r["foreign"] for r in runs),
        "cpu_s_median": statistics.median(r["cpu_s"] for r in runs),
    }
    if window is not None:
        out["foreign_window"] = round(window.foreign, 3)
        out["steal_window"] = round(window.steal, 3)
    return out


def time_fn(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> Dict[str, Any]:
    for _ in range(warmup):
        fn()
    runs = []
    with Meter() as window:
        for _ in range(repeats):
            with Meter() as m:
                fn()
            runs.append(m.record())
    return summarize(runs, window)


def fmt_s(s: float) -> str:
    if s >= 10:
        return f"{s:.1f} s"
    if s >= 1:
        return f"{s:.2f} s"
    return f"{s * 1000:.1f} ms"


def log(msg: str) -> None:
    stamp = _dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", flush=True)


def log_timing(name: str, r: Dict[str, Any], extra: str = "") -> None:
    log(f"{name}: median {fmt_s(r['median_s'])}, min {fmt_s(r['min_s'])}, runs "
        f"{[round(x, 3) for x in r['runs_s']]}, foreign {r['foreign_runs']}"
        + (f" (window {r['foreign_window']}, steal {r.get('steal_window')})" if "foreign_window" in r else "")
        + (f" {extra}" if extra else ""))


# -------------------------------------------------------------------------- memory (RSS)
def _status_kb(field: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


class RSS:
    """Peak RSS per phase (resets the kernel's high-water mark with /proc/self/clear_refs)."""

    def __init__(self) -> None:
        self.overall_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.phases: Dict[str, Dict[str, float]] = {}
        self.can_reset = True

    def _hwm_mb(self) -> float:
        v = _status_kb("VmHWM") / 1024
        if math.isnan(v):
            v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return v

    def start(self) -> None:
        self.overall_peak_mb = max(self.overall_peak_mb, self._hwm_mb())
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.can_reset = False

    def end(self, phase: str) -> Dict[str, float]:
        peak = self._hwm_mb()
        self.overall_peak_mb = max(self.overall_peak_mb, peak)
        rec = {"peak_mb": round(peak, 1), "rss_end_mb": round(_status_kb("VmRSS") / 1024, 1),
               "peak_is_phase_local": self.can_reset}
        self.phases[phase] = rec
        log(f"RSS {phase}: peak {rec['peak_mb']:.0f} MB, now {rec['rss_end_mb']:.0f} MB")
        return rec
