"""Benchmark of the prompt-free modes (issue: segment and name everything, find by text).

Two sections, each writing a markdown table (``--out``):

* ``quality``: ``ovsam-shapes`` (the shipped demo model) on held-out synthetic scenes (seed 1000,
  never used in training): everything mode on base-class scenes and on mixed scenes (2 of 8
  classes novel), find mode for each base class on base-class scenes. Recall = ground-truth
  objects found with IoU >= 0.5 *and* the right name; precision = matched / returned.
* ``speed``: the real-size architecture (random weights) on a 1024x1024 image with its embedding
  given, 32x32 grid: ``Predictor.segment_everything`` (decode + classify against LVIS + filter)
  vs ``segment_anything``'s ``SamAutomaticMaskGenerator`` with a same-size SAM decoder (SAM
  ViT-B's, 256-d) on the same grid, in the same process, both with their quality filters off so
  that every candidate goes through all post-processing (random weights would otherwise let
  both skip it). Also the peak memory added over the encode (RSS sampled every 5 ms).

    python bench/bench_auto.py quality --images 100 --out bench/results/auto-quality.md
    python bench/bench_auto.py speed --repeats 2 --out bench/results/auto-speed.md

Every figure is printed with the CPU's ISA, torch's thread count and the load average.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import List

import numpy as np
import torch


def header() -> str:
    cap = torch.backends.cpu.get_cpu_capability()
    load = os.getloadavg()[0]
    return (f"torch {torch.__version__}, CPU capability {cap}, {torch.get_num_threads()} threads, "
            f"load average {load:.2f} at start")


# --------------------------------------------------------------------------- quality
def quality(n_images: int, points_per_side: int) -> str:
    from ovsam_core import Predictor
    from ovsam_core.evaluation.auto import auto_markdown, evaluate_auto
    from ovsam_core.synthetic import CATEGORIES, generate_split

    base = [c.name for c in CATEGORIES if c.split == "base"]
    pred = Predictor("ovsam-shapes", device="cpu", dtype="fp32", progress=False)
    lines = ["# Prompt-free modes: quality (`ovsam-shapes`, held-out synthetic scenes)", "", header(), ""]
    with tempfile.TemporaryDirectory() as tmp:
        b = generate_split(Path(tmp) / "base", "val", n_images, 1000, classes=base)
        m = generate_split(Path(tmp) / "mixed", "val", n_images, 1000)
        for title, split, task in (("everything, base-class scenes", b, "everything"),
                                   ("everything, mixed scenes (novel classes present)", m, "everything"),
                                   ("find (each base class), base-class scenes", b, "find")):
            t0 = time.perf_counter()
            res = evaluate_auto(pred, split["images"], split["annotations"], task=task,
                                points_per_side=points_per_side, progress=True)
            dt = time.perf_counter() - t0
            lines += [f"## {title}", "", auto_markdown(res), "",
                      f"{dt:.1f} s for {res['n_images']} images ({points_per_side}x{points_per_side} grid)", ""]
            if task == "find":
                lines += ["| query | GT | returned | recall | precision |", "|---|---|---|---|---|"]
                for q, r in res["per_class"].items():
                    lines.append(f"| {q} | {r['gt']} | {r['returned']} | {r['recall']:.3f} | {r['precision']:.3f} |")
                lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- speed
class PeakRSS:
    """Peak resident memory of this process, sampled by a thread (bytes)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "PeakRSS":
        self.peak = self.now()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.now())


def _sam_generator(points_per_side: int):
    """SamAutomaticMaskGenerator whose image encoder is skipped (the embedding is 'given')."""
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
    from segment_anything.predictor import SamPredictor

    torch.manual_seed(0)
    dec = MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(depth=2, embedding_dim=256,
                      mlp_dim=2048, num_heads=8), transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256)
    pe = PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16)
    class NoEncoder(torch.nn.Identity):  # never run: set_image below puts the given embedding
        img_size = 1024

    sam = Sam(image_encoder=NoEncoder(), prompt_encoder=pe, mask_decoder=dec).eval()
    feats = torch.randn(1, 256, 64, 64)

    def set_image(self, image, image_format="RGB"):  # the embedding is given: no encoder work
        self.reset_image()
        self.original_size = image.shape[:2]
        self.input_size = self.transform.get_preprocess_shape(*image.shape[:2], 1024)
        self.features = feats
        self.is_image_set = True

    gen = SamAutomaticMaskGenerator(sam, points_per_side=points_per_side, pred_iou_thresh=0.0,
                                    stability_score_thresh=0.0, box_nms_thresh=0.7)
    gen.predictor.set_image = set_image.__get__(gen.predictor, SamPredictor)
    return gen


def speed(repeats: int, points_per_side: int, with_sam: bool = True) -> str:
    from ovsam_core import Predictor
    from ovsam_core.weights.loader import LoadedModel, build_model
    from ovsam_core.weights.registry import get_model_spec
    from ovsam_core.text.encoder import TextEncoder

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8)
    spec = get_model_spec("ovsam-lvis")
    torch.manual_seed(0)
    model = build_model(spec.arch).eval().requires_grad_(False)
    text = TextEncoder(spec.arch_config).eval().requires_grad_(False)
    # an LVIS-shaped random classifier "shipped" with the model (1203 classes, 768-d): the same
    # classification cost as the real one, without an hour of random-text-tower prompts here
    clf = torch.nn.functional.normalize(torch.randn(1203, 1, spec.arch_config.clip_embed_dim), dim=-1)
    loaded = LoadedModel(spec=spec, model=model, text_encoder=text, classifier=clf, weights_id="bench-random")
    gen = _sam_generator(points_per_side)
    pred = Predictor(loaded, device="cpu", dtype="fp32", progress=False)
    emb = pred.embed(image)
    pred.classifier("lvis")  # text classifier cached before timing (as after the first call)
    rss_after_encode = PeakRSS.now()
    gen.generate(image[:64, :64])  # warm-up
    pred.segment_everything(emb, "lvis", points_per_side=4, min_score=0.0, stability_thresh=0.0)
    ours: List[float] = []
    sams: List[float] = []
    peak = 0
    n_ours = n_sam = 0
    for _ in range(repeats):
        # ours first: its memory is measured from just before the call, before SAM's generator
        # has grown the process's heap (freed memory is not always returned to the system)
        with PeakRSS() as p:
            t0 = time.perf_counter()
            res = pred.segment_everything(emb, "lvis", points_per_side=points_per_side, min_score=0.0,
                                          stability_thresh=0.0)
            ours.append(time.perf_counter() - t0)
        peak = max(peak, p.peak)
        n_ours = len(res)
        if not with_sam:
            continue
        t0 = time.perf_counter()
        masks = gen.generate(image)
        sams.append(time.perf_counter() - t0)
        n_sam = len(masks)
        del masks
    o = float(np.median(ours))
    s = float(np.median(sams)) if sams else float("nan")
    ratio = o / s
    extra = (peak - rss_after_encode) / 2 ** 30
    return "\n".join([
        "# Prompt-free modes: speed (real-size architecture, random weights, 1024x1024, embedding given)", "",
        header(), "",
        f"| what | median of {repeats} | target | met |", "|---|---|---|---|",
        f"| SamAutomaticMaskGenerator, {points_per_side}x{points_per_side} grid, same-size SAM decoder "
        f"(segments only; {n_sam} masks) | {s:.2f} s | | |",
        f"| ovsam segment_everything (decode + classify LVIS + filter; {n_ours} objects) | {o:.2f} s | | |",
        f"| ratio ovsam / SAM | {ratio:.2f}x | <= 0.8x | {'yes' if ratio <= 0.8 else 'NO'} |",
        f"| peak memory over the encode | {extra:.2f} GiB | <= 1.5 GB | {'yes' if extra * 2 ** 30 <= 1.5e9 else 'NO'} |",
        "", "Both with quality filters off (every non-empty candidate is post-processed).", ""])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("section", choices=["quality", "speed"])
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--points-per-side", type=int, default=None)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-sam", action="store_true", help="speed: time and measure ovsam only")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.section == "quality":
        text = quality(a.images, a.points_per_side or 16)
    else:
        text = speed(a.repeats, a.points_per_side or 32, not a.no_sam)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
