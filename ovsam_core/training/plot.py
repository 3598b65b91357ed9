"""Loss-curve plot from ``metrics.jsonl`` (matplotlib when installed, else a plain PIL drawing)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Sequence, Union

PathLike = Union[str, Path]
COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def read_metrics(path: PathLike) -> List[Dict]:
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def plot_losses(metrics: PathLike, out: PathLike, keys: Sequence[str] = ()) -> Path:
    """Plot every ``loss*`` series (or ``keys``) against ``step`` into a PNG."""
    rows = [r for r in read_metrics(metrics) if "step" in r]
    if not keys:
        keys = sorted({k for r in rows for k in r if k.startswith("loss")}, key=lambda k: (k != "loss", k))
    series = {k: [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])]
              for k in keys}
    out = Path(out)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_pil(series, out)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for k, pts in series.items():
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _plot_pil(series: Dict[str, List], out: Path, size=(700, 400)) -> Path:
    from PIL import Image, ImageDraw

    w, h = size
    ml, mr, mt, mb = 60, 20, 20, 40
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    pts_all = [p for pts in series.values() for p in pts]
    d.rectangle([ml, mt, w - mr, h - mb], outline=(0, 0, 0))
    if pts_all:
        x0, x1 = min(p[0] for p in pts_all), max(p[0] for p in pts_all)
        y0, y1 = min(p[1] for p in pts_all), max(p[1] for p in pts_all)
        x1 = x1 if x1 > x0 else x0 + 1
        y1 = y1 if y1 > y0 else y0 + 1
        fx = lambda x: ml + (x - x0) / (x1 - x0) * (w - ml - mr)  # noqa: E731
        fy = lambda y: h - mb - (y - y0) / (y1 - y0) * (h - mt - mb)  # noqa: E731
        for i, (k, pts) in enumerate(series.items()):
            c = COLORS[i % len(COLORS)]
            if len(pts) > 1:
                d.line([(fx(x), fy(y)) for x, y in pts], fill=c, width=2)
            elif pts:
                d.ellipse([fx(pts[0][0]) - 2, fy(pts[0][1]) - 2, fx(pts[0][0]) + 2, fy(pts[0][1]) + 2], fill=c)
            d.text((w - mr - 150, mt + 5 + 14 * i), k, fill=c)
        d.text((5, mt), f"{y1:.3g}", fill=(0, 0, 0))
        d.text((5, h - mb - 10), f"{y0:.3g}", fill=(0, 0, 0))
        d.text((ml, h - mb + 5), f"step {x0}", fill=(0, 0, 0))
        d.text((w - mr - 80, h - mb + 5), f"step {x1}", fill=(0, 0, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out
