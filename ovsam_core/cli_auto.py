"""Prompt-free command line: ``ovsam predict IMG --everything | --find NAME`` and ``ovsam label``.

``ovsam label IMAGES... (--everything | --find NAME ...) --out results.json`` labels a folder,
glob or list of images into **COCO results JSON** (RLE masks, ``category_id`` = vocabulary
index + 1) plus ``<out>.images.json`` (image ids, files, sizes, categories and the images that
could not be read). It is

* **resumable**: every finished image is appended (one line, flushed and fsynced) to a journal
  ``<out>.parts/shard-I-of-N.jsonl``; a rerun skips what the journal holds, so an interrupted run
  continues where it stopped and nothing is labelled twice or lost;
* **shardable**: ``--shard I/N`` (0-based), or ``RANK``/``WORLD_SIZE`` from ``torchrun``, labels
  every N-th image; the shard that finishes last merges all journals into ``--out`` (atomic
  replace), in image order;
* **forgiving**: an unreadable image is reported, recorded and skipped; it never aborts the run.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .hosts.cliopts import grid_options
from .images import IMAGE_SUFFIXES


# --------------------------------------------------------------------------- options
def add_auto_options(s: argparse.ArgumentParser, required: bool = False) -> None:
    """``--everything`` / ``--find`` and their settings (shared by ``predict`` and ``label``)."""
    g = s.add_argument_group("prompt-free modes")
    g.add_argument("--everything", action="store_true",
                   help="segment and name every object (a grid of point prompts; no prompt needed)")
    g.add_argument("--find", action="append", metavar="NAME",
                   help="find every instance of this class name (repeat for several)")
    g.add_argument("--background", metavar="VOCAB",
                   help="find mode: the vocabulary the queries compete with (default: the model's own)")
    grid_options(g)
    g.add_argument("--min-stability", type=float, default=0.85, help="minimum mask stability (default 0.85)")
    g.add_argument("--crop-layers", type=int, default=0,
                   help="also run overlapping crops (1: 2x2, 2: +4x4) for large images with small objects")
    g.add_argument("--max-objects", type=int, default=None, help="keep at most this many objects per image")


def wants_auto(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "everything", False) or getattr(args, "find", None))


def auto_options(args: argparse.Namespace):
    """:class:`~ovsam_core.automatic.EverythingOptions` from the parsed options (validated)."""
    from .automatic import EverythingOptions

    if args.everything and args.find:
        raise ValueError("choose one of --everything and --find")
    return EverythingOptions(points_per_side=args.points_per_side, min_score=args.min_score,
                             stability_thresh=args.min_stability, crop_n_layers=args.crop_layers,
                             top_k=getattr(args, "top_k", 5), max_objects=args.max_objects).validated()


def run_auto(predictor, image, args: argparse.Namespace, opts=None):
    """Everything or find mode on one image, as the options say."""
    opts = opts or auto_options(args)
    if args.find:
        return predictor.find(image, args.find, args.background, options=opts, mode=args.mode)
    return predictor.segment_everything(image, args.vocab, options=opts, mode=args.mode)


# --------------------------------------------------------------------------- predict
def predict_auto(args: argparse.Namespace, predictor, img) -> int:
    """``ovsam predict IMG --everything | --find ...``: JSON (+ overlay) of every object found."""
    from .cli import write_outputs
    from .results import auto_result_to_json

    if getattr(args, "prompts", None):
        raise ValueError("--everything/--find take no --box/--point prompts; use one or the other")
    res = run_auto(predictor, img, args)

    def describe(o) -> str:
        q = f"  [query {o.query!r}]" if o.query else ""
        return (f"{o.label} ({o.score:.3f})  bbox {list(o.bbox_xyxy)}  area {o.area}  "
                f"point {[round(v) for v in o.point]}{q}")

    write_outputs(args, auto_result_to_json(res, str(args.image)), img.rgb, res.objects, describe)
    return 0


# --------------------------------------------------------------------------- label
def list_images(inputs: Sequence[str]) -> List[Path]:
    """Files, folders (searched recursively for images) and globs -> sorted unique paths."""
    out: List[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            hits = [Path(h) for h in glob.glob(item, recursive=True) if Path(h).is_file()]
            if not hits:
                raise FileNotFoundError(f"no image matches {item!r} (a file, a folder or a glob like 'imgs/*.png')")
            out.extend(hits)
    uniq = sorted({f.resolve() for f in out})
    if not uniq:
        raise FileNotFoundError(f"no image found in {list(inputs)}")
    return uniq


def parse_shard(text: Optional[str], env: Dict[str, str] = os.environ) -> Tuple[int, int]:
    """``I/N`` (0 <= I < N), else torchrun's ``RANK``/``WORLD_SIZE``, else ``(0, 1)``."""
    if text:
        try:
            i, n = (int(v) for v in text.split("/"))
        except ValueError:
            raise ValueError(f"bad --shard {text!r}: expected I/N, e.g. 0/4") from None
    else:
        i, n = int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"bad shard {i}/{n}: need 0 <= I < N")
    return i, n


def read_journal(path: Path) -> Dict[int, Dict[str, Any]]:
    """The finished images of a shard's journal by image id (a torn last line is ignored, so
    that image is done again)."""
    from .hosts.jobs import Journal

    return {int(k): v for k, v in Journal(path, key="image_id").records().items()}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def merge_journals(out: Path, parts: Path, n: int, root: Optional[Path],
                   categories: List[Dict[str, Any]], info: Dict[str, Any]) -> bool:
    """Write ``out`` and ``out.images.json`` once every shard's journal is complete."""
    if not all((parts / f"shard-{i}-of-{n}.done").is_file() for i in range(n)):
        return False
    recs: Dict[int, Dict[str, Any]] = {}
    for i in range(n):
        recs.update(read_journal(parts / f"shard-{i}-of-{n}.jsonl"))
    results, images, errors = [], [], []
    for image_id in sorted(recs):
        r = recs[image_id]
        if r["status"] == "ok":
            images.append({"id": image_id, "file_name": r["file"], "width": r["width"], "height": r["height"]})
            results.extend(r["annotations"])
        else:
            errors.append({"id": image_id, "file_name": r["file"], "error": r["error"]})
    _atomic_write(out, json.dumps(results))
    index = {"images": images, "categories": categories, "errors": errors, "info": info,
             "root": str(root) if root else None}
    _atomic_write(out.with_name(out.name + ".images.json"), json.dumps(index, indent=1))
    return True


def cmd_label(args: argparse.Namespace) -> int:
    """``ovsam label``: see the module doc."""
    from .cli import UserError, _predictor
    from .images import ImageError, load_image
    from .hosts.jobs import Journal, run_batch
    from .hosts.prelabel import coco_annotations, from_auto

    if not wants_auto(args):
        raise UserError("choose what to label: --everything, or --find NAME (repeatable)")
    opts = auto_options(args)
    files = list_images(args.images)
    shard, n = parse_shard(args.shard)
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    rel = [str(f.relative_to(root)) for f in files]
    out: Path = args.out
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    journal = Journal(parts / f"shard-{shard}-of-{n}.jsonl", key="image_id")
    done = journal.records()
    mine = [(k + 1, files[k], rel[k]) for k in range(shard, len(files), n)]
    predictor = _predictor(args, args.quiet)
    if args.find:
        from .automatic import find_vocabulary
        from .vocabulary import load_vocabulary

        bg = args.background if args.background is not None else predictor.loaded.spec.vocabulary
        vocab = load_vocabulary(find_vocabulary(args.find, list(load_vocabulary(bg).names)))
    else:
        vocab = predictor.classifier(args.vocab).vocabulary
    categories = [{"id": i + 1, "name": disp, "synonyms": raw}
                  for i, (disp, raw) in enumerate(zip(vocab.display_names(), vocab.names))]
    info = {"model": predictor.name, "task": "find" if args.find else "everything",
            "settings": {k: getattr(opts, k) for k in vars(opts)}, "queries": args.find,
            "vocabulary": args.vocab, "background": args.background}
    if not args.quiet and done:
        print(f"resuming: {sum(t[0] in done for t in mine)} of {len(mine)} images of shard {shard}/{n} already done")

    def label_one(item) -> None:
        image_id, path, name = item
        try:
            img = load_image(path)
            res = run_auto(predictor, img, args, opts)
        except (ImageError, OSError) as e:
            journal.append({"image_id": image_id, "file": name, "status": "error", "error": str(e)})
            raise
        anns = coco_annotations(from_auto(res), image_id, lambda o: o.object.label_index + 1)
        journal.append({"image_id": image_id, "file": name, "status": "ok", "width": img.width,
                        "height": img.height, "annotations": anns})

    report = run_batch(mine, label_one, key=lambda t: t[0], done=lambda k: k in done, name=lambda t: str(t[1]),
                       errors=(ImageError, OSError),
                       desc=f"label {shard}/{n}" if n > 1 else "label", unit="img", show_progress=not args.quiet)
    (parts / f"shard-{shard}-of-{n}.done").write_text("done\n")
    merged = merge_journals(out, parts, n, root, categories, info)
    if not args.quiet:
        msg = (f"shard {shard}/{n}: {report.processed + len(report.failed)} labelled now ({len(report.failed)} "
               f"unreadable), {report.skipped} before")
        print(msg + (f"; wrote {out} and {out.name}.images.json" if merged else
                     f"; waiting for the other shards to merge into {out}"))
    return 0


def register_label_command(sub) -> None:
    """Add ``ovsam label`` to the top-level sub-parser group."""
    from .hosts.cliopts import add_model_options

    s = sub.add_parser("label", help="label a folder/glob of images without prompts (COCO results JSON)",
                       description="Segment and name everything (--everything) or find classes by name "
                                   "(--find) on many images; resumable and shardable (see --shard).")
    s.add_argument("images", nargs="+", help="image files, folders (recursive) or globs")
    s.add_argument("--out", type=Path, required=True, help="COCO results JSON (also writes OUT.images.json)")
    s.add_argument("--vocab", default=None, help="everything mode: the vocabulary (default: the model's)")
    s.add_argument("--mode", choices=["head", "fused"], default=None, help="recognition mode (default: the model's)")
    s.add_argument("--top-k", type=int, default=5)
    s.add_argument("--shard", help="I/N: label every N-th image starting at I (default: torchrun's RANK/WORLD_SIZE)")
    add_auto_options(s)
    add_model_options(s, default_model="ovsam-lvis")
    s.set_defaults(func=cmd_label)
