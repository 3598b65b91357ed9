"""``ovsam train distill|clip2sam CONFIG``, ``ovsam eval ...`` and ``ovsam synth ...``.

Wire into the main CLI with :func:`register_train_commands` (``ovsam_core.cli``). Runs
stand-alone as ``python -m ovsam_core.cli_train ...`` too, e.g. under torchrun::

    torchrun --nproc-per-node 8 -m ovsam_core.cli_train train clip2sam configs/clip2sam_coco_rn50x16.yaml

Training needs the ``train`` extra (``pip install "ovsam[train]"``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional


def _common_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="YAML config (see configs/ and docs/training.md)")
    p.add_argument("--work-dir", help="output folder (overrides run.work_dir)")
    p.add_argument("--resume", help="'auto' (default from the config), a checkpoint path, or 'none'")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=2e-4 --set run.batch_size=4 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def _overrides(args: argparse.Namespace) -> List[str]:
    out = list(args.overrides)
    if args.work_dir:
        out.append(f"run.work_dir={args.work_dir}")
    if args.resume:
        out.append("run.resume=null" if args.resume.lower() == "none" else f"run.resume={args.resume}")
    if args.no_progress:
        out.append("run.progress=false")
    return out


def _print_summary(res: dict) -> None:
    if not res.get("checkpoint"):
        return  # not rank 0
    print(f"finished at step {res['step']}: {res['work_dir']}")
    last = res.get("last") or {}
    if last:
        print("last step: " + ", ".join(f"{k}={v:.4g}" for k, v in last.items()
                                        if k.startswith("loss") and isinstance(v, float)))
    print(f"checkpoint: {res['checkpoint']}")
    for p in res.get("exported", []):
        print(f"exported:   {p}")
    if res.get("exported"):
        print(f"load with:  --weights-dir {Path(res['exported'][0]).parent}")


def _cmd_train_distill(args: argparse.Namespace) -> int:
    from .training.config import DistillConfig, load_config, to_dict

    cfg = load_config(DistillConfig, args.config, _overrides(args))
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    from .training.distill import train_distill

    _print_summary(train_distill(cfg))
    return 0


def _cmd_train_clip2sam(args: argparse.Namespace) -> int:
    from .training.config import Clip2SamConfig, load_config, to_dict

    cfg = load_config(Clip2SamConfig, args.config, _overrides(args))
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    from .training.clip2sam import train_clip2sam

    _print_summary(train_clip2sam(cfg))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation.api import run_eval

    baselines = [b for b in (args.baselines or "").split(",") if b and b != "none"]
    res = run_eval(
        args.images, args.annotations, vocabulary=args.vocab, novel_classes=args.novel or (),
        detections=args.detections, prompts=[p for p in args.prompts.split(",") if p],
        score_mode=args.score, max_images=args.max_images, out_dir=args.out, progress=not args.quiet,
        model=None if args.model in ("none", "") else args.model, weights_dir=args.weights_dir,
        weights=args.weights, mode=args.mode, clip_box_frame=args.clip_boxes, baselines=baselines,
        sam=args.sam, sam_checkpoint=args.sam_checkpoint, clip_model=args.clip_model,
        device=args.device, download=not args.no_download)
    if not args.quiet:
        from .evaluation.report import markdown_report

        print(markdown_report(res))
        print(f"wrote {args.out}/results.json and results.md")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from .synthetic import generate_dataset

    splits = {}
    for item in args.splits.split(","):
        name, _, n = item.partition(":")
        if not n.isdigit():
            raise ValueError(f"bad --splits item {item!r}: expected name:count, e.g. train:64")
        splits[name] = int(n)
    paths = generate_dataset(args.out, splits, seed=args.seed, image_size=args.image_size,
                             train_base_only=args.train_base_only, min_objects=args.min_objects,
                             max_objects=args.max_objects)
    for split, p in paths.items():
        print(f"{split}: images {p['images']}  annotations {p['annotations']}  detections {p['detections']}")
    return 0


def register_train_commands(subparsers) -> None:
    """Add ``train`` (``distill``, ``clip2sam``), ``eval`` and ``synth`` to an argparse
    sub-parser group (the one of ``ovsam``'s top-level parser)."""
    s = subparsers.add_parser("train", help="train OVSAM: SAM2CLIP distillation or CLIP2SAM (see docs/training.md)")
    tsub = s.add_subparsers(dest="train_command", required=True)
    t = tsub.add_parser("distill", help="SAM2CLIP: distil a SAM image encoder into the neck on CLIP features")
    _common_train_options(t)
    t.set_defaults(func=_cmd_train_distill)
    t = tsub.add_parser("clip2sam", help="CLIP2SAM: train the FPN + recognising decoder on COCO-format instances")
    _common_train_options(t)
    t.set_defaults(func=_cmd_train_clip2sam)

    e = subparsers.add_parser("eval", help="Table-1 IoU/accuracy and Table-2 mask AP of models and SAM+CLIP baselines",
                              description="Evaluate a registered model and/or the Image-Crop / Feature-Crop "
                                          "baselines on COCO-format data. Writes results.json, results.md and "
                                          "per-prompt predictions.")
    e.add_argument("--images", type=Path, required=True, help="image folder")
    e.add_argument("--annotations", type=Path, required=True, help="COCO instances JSON (polygons or RLE)")
    e.add_argument("--detections", type=Path, help="detector boxes (COCO results JSON) for Table 2")
    e.add_argument("--model", default="ovsam-lvis-eval", help="registered model, or 'none' for baselines only")
    e.add_argument("--weights-dir", type=Path, help="folder with the model's files (e.g. your trained export)")
    e.add_argument("--weights", type=Path, help="a fused .safetensors file")
    e.add_argument("--mode", choices=["head", "fused"], help="recognition mode (default: the model's)")
    e.add_argument("--clip-boxes", choices=["original", "model"], default="original",
                   help="fused mode: GT boxes in original pixels (upstream quirk Q1, the paper's numbers; "
                        "default) or mapped to the model frame")
    e.add_argument("--baselines", default="", help="comma list: image-crop,feature-crop")
    e.add_argument("--sam", default="vit_h", choices=["vit_h", "vit_l", "vit_b", "tiny"], help="the baselines' SAM")
    e.add_argument("--sam-checkpoint", type=Path, help="official SAM checkpoint for --sam vit_*")
    e.add_argument("--clip-model", help="registered model whose CLIP the baselines use (default: --model)")
    e.add_argument("--vocab", choices=["coco", "lvis"], help="use a shipped vocabulary (names and base/novel split)")
    e.add_argument("--novel", nargs="*", help="class names to count as novel (overrides the split)")
    e.add_argument("--prompts", default="box,point", help="Table-1 prompts: box,point")
    e.add_argument("--score", choices=["det", "cls", "det*cls"], default="det*cls", help="Table-2 mask score")
    e.add_argument("--max-images", type=int)
    e.add_argument("--device", default="cpu")
    e.add_argument("--no-download", action="store_true")
    e.add_argument("--out", type=Path, required=True, help="output folder")
    e.add_argument("-q", "--quiet", action="store_true")
    e.set_defaults(func=_cmd_eval)

    y = subparsers.add_parser("synth", help="write a deterministic synthetic COCO-format dataset (shapes/textures)")
    y.add_argument("out", type=Path)
    y.add_argument("--splits", default="train:64,val:16", help="name:count list (default train:64,val:16)")
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--image-size", type=int, default=256, help="long side in pixels")
    y.add_argument("--min-objects", type=int, default=1)
    y.add_argument("--max-objects", type=int, default=4)
    y.add_argument("--train-base-only", action="store_true", help="no novel class in the train split")
    y.set_defaults(func=_cmd_synth)


def main(argv: Optional[List[str]] = None) -> int:
    """Stand-alone entry point (``python -m ovsam_core.cli_train``)."""
    import logging

    p = argparse.ArgumentParser(prog="ovsam", description="ovsam training, evaluation and synthetic data")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    register_train_commands(sub)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="ovsam: %(levelname)s: %(message)s")
    from .training.config import ConfigError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, ValueError, FileNotFoundError, KeyError) as e:
        if args.verbose:
            raise
        print(f"ovsam: error: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
