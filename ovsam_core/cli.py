"""The ``ovsam`` command line: ``models``, ``download``, ``convert``, ``predict``, ``embed``,
``vocab build`` and ``export-onnx``.

User mistakes (unknown model, missing weights offline, bad paths) print one line starting
with ``ovsam: error:`` and exit with status 2; no traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence

EXIT_USAGE = 2


class UserError(Exception):
    """An error caused by the command's input; printed without a traceback."""


def _cmd_runtime(args: argparse.Namespace) -> int:
    from .runtime.report import runtime_report

    print(runtime_report(args.device, measure=args.measure, refresh=args.refresh))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .weights.hub import cache_dir, cache_status
    from .weights.registry import get_model_spec, list_models

    if args.card:
        from .weights.loader import model_card

        print(model_card(get_model_spec(args.card)))
        return 0
    print(f"cache: {cache_dir()}")
    for name in list_models():
        spec = get_model_spec(name)
        status = cache_status(spec, args.weights_dir) if spec.files else {}
        ready = "ready" if all(status.values()) else f"{sum(status.values())}/{len(status)} files local"
        if not spec.files:
            ready = "shipped in the package, no download" if spec.packaged else "no download needed"
        print(f"\n{name}  [arch {spec.arch}, mode {spec.mode}, vocabulary {spec.vocabulary}; {ready}]")
        print(f"  {spec.description}")
        if spec.packaged:
            print(f"  weights: {spec.packaged} (in the package)")
            print(f"      licence: {spec.packaged_license}")
        if spec.card:
            print(f"  model card: `ovsam models --card {name}`")
        for wf in spec.files:
            mark = "x" if status.get(wf.role) else " "
            sha = wf.sha256[:12] + "…" if wf.sha256 else "no published sha256"
            print(f"  [{mark}] {wf.role:<14} {wf.filename:<36} {sha}")
            print(f"      from {wf.source}")
            print(f"      licence: {wf.license}")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from .weights.hub import download_model
    from .weights.registry import get_model_spec

    spec = get_model_spec(args.model)
    paths = download_model(spec, progress=not args.quiet)
    for role, path in paths.items():
        print(f"{role}: {path}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .weights.convert import convert_model

    out = convert_model(args.model, args.out, args.weights_dir, include_text=not args.image_only,
                        download=not args.no_download, progress=not args.quiet)
    size = out.stat().st_size / 1e9
    print(f"wrote {out} ({size:.2f} GB); load it with --weights {out} or "
          f"load_model({args.model!r}, weights={str(out)!r})")
    return 0


def _floats(text: str, n: Sequence[int], what: str) -> List[float]:
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        vals = []
    if len(vals) not in n:
        raise UserError(f"bad {what} {text!r}: expected " + " or ".join(
            {2: "x,y", 3: "x,y,label", 4: "x0,y0,x1,y1"}[k] for k in n))
    return vals


def parse_prompts(args: argparse.Namespace):
    """--box, --point, --points and --prompt options -> prompts, in command-line order."""
    import json as _json

    from .prompts import Prompt

    prompts = []
    for kind, value in getattr(args, "prompts", None) or []:
        if kind == "box":
            prompts.append(Prompt.from_box(*_floats(value, (4,), "--box")))
        elif kind == "point":
            prompts.append(Prompt.from_points([_floats(value, (2, 3), "--point")]))
        elif kind == "points":
            items = [v for v in value.replace(";", " ").split() if v]
            prompts.append(Prompt.from_points([_floats(v, (2, 3), "--points item") for v in items]))
        else:
            try:
                d = _json.loads(value)
                pts = d.get("points") or []
                box = d.get("box")
                p = Prompt.from_points(pts) if pts else Prompt()
                prompts.append(Prompt(p.points, p.labels, tuple(map(float, box)) if box else None))
            except (ValueError, TypeError, AttributeError) as e:
                raise UserError(f"bad --prompt {value!r}: expected JSON like "
                                '\'{"box": [x0, y0, x1, y1], "points": [[x, y, 1]]}\' ({e})') from None
    if not prompts:
        raise UserError("no prompt given: add --box x0,y0,x1,y1 and/or --point x,y, or use --everything / "
                        "--find NAME (see ovsam predict -h)")
    return prompts


class _PromptAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, "prompts", None) or [])
        items.append((self.dest_kind, values))
        namespace.prompts = items


def _prompt_action(kind: str):
    return type(f"_{kind}", (_PromptAction,), {"dest_kind": kind})


def _predictor(args: argparse.Namespace, quiet: bool = False, one_image: bool = False):
    """The Predictor of the model options; ``one_image``: the process encodes a single image, so an
    OpenVINO encoder need not keep its compiled stages (peak memory: one stage's weights)."""
    from .predictor import Predictor

    return Predictor(args.model, weights_dir=args.weights_dir, weights=getattr(args, "weights", None),
                     device=args.device, dtype=args.dtype, progress=not quiet,
                     download=not getattr(args, "no_download", False), resident_encoder=not one_image)


def _channels(text: Optional[str]) -> Optional[List[int]]:
    if not text:
        return None
    try:
        return [int(c) for c in text.split(",")]
    except ValueError:
        raise UserError(f"bad --channels {text!r}: expected indices like 0 or 0,2,1") from None


def _cmd_predict(args: argparse.Namespace) -> int:
    from .cli_auto import predict_auto, wants_auto
    from .images import load_image
    from .results import prediction_to_json

    if wants_auto(args):
        img = load_image(args.image, channels=_channels(args.channels))
        # crops (--crop-layers) are encoded one by one: keep the compiled encoder then
        return predict_auto(args, _predictor(args, args.quiet, one_image=not getattr(args, "crop_layers", 0)), img)
    prompts = parse_prompts(args)
    img = load_image(args.image, channels=_channels(args.channels))
    pred = _predictor(args, args.quiet, one_image=True).predict(img, prompts, args.vocab, top_k=args.top_k, mode=args.mode)
    write_outputs(args, prediction_to_json(pred, str(args.image)), img.rgb, pred.objects,
                  lambda o: f"{o.label} ({o.score:.3f})  bbox {list(o.bbox_xyxy)}  area {o.area}")
    return 0


def write_outputs(args: argparse.Namespace, doc, rgb, objects, describe) -> None:
    """Write ``--out`` (JSON) and ``--overlay`` (PNG); unless ``-q``, one line per object
    (``describe(obj)``) and where the files went."""
    import json as _json

    from .results import save_overlay

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(_json.dumps(doc, indent=1))
    if args.overlay:
        save_overlay(rgb, objects, args.overlay)
    if not args.quiet:
        for i, o in enumerate(objects):
            print(f"#{i}: {describe(o)}")
        print(f"{len(objects)} objects; wrote {args.out}" + (f" and {args.overlay}" if args.overlay else ""))


def _cmd_embed(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .embedding import EmbeddingStore
    from .images import load_image

    pred = _predictor(args, args.quiet)
    args.out.mkdir(parents=True, exist_ok=True)
    store = EmbeddingStore(args.out)
    for path in tqdm(args.images, desc="embed", disable=args.quiet or len(args.images) < 2):
        emb = pred.embed(load_image(path, channels=_channels(args.channels)))
        if args.format == "zarr":
            out = emb.save(store.path_for(emb.signature).with_suffix(".zarr"))
        else:
            out = store.put(emb)
        if not args.quiet:
            print(f"{path} -> {out}")
    return 0


def _cmd_vocab_build(args: argparse.Namespace) -> int:
    from .vocabulary import save_vocabulary_bundle

    pred = _predictor(args, args.quiet)
    clf = pred.classifier(str(args.file))
    out = save_vocabulary_bundle(clf, args.out)
    print(f"wrote {len(clf)} classes to {out} (use --vocab {out})")
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from .export import export_decoder_onnx
    from .weights.loader import load_model

    loaded = load_model(args.model, args.weights_dir, with_text=False, progress=not args.quiet)
    out = export_decoder_onnx(loaded.model, args.out, mode=args.mode)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .hosts.cliopts import add_model_options

    p = argparse.ArgumentParser(prog="ovsam", description="Open-Vocabulary SAM: masks and names for clicks and boxes.")
    p.add_argument("--version", action="version", version=f"ovsam {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log details (and show tracebacks)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("models", help="list registered models, their files, licences and cache status")
    s.add_argument("--weights-dir", type=Path, help="also look for the files in this folder")
    s.add_argument("--card", metavar="MODEL", help="print a model's card (training data, command, quality)")
    s.set_defaults(func=_cmd_models)

    s = sub.add_parser("runtime", help="this machine's ISA and what --dtype auto picks on it, and why")
    s.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
    s.add_argument("--measure", action="store_true", help="run (or show the cached) bf16 micro-benchmark")
    s.add_argument("--refresh", action="store_true", help="measure the bf16 micro-benchmark again")
    s.set_defaults(func=_cmd_runtime)

    s = sub.add_parser("download", help="download and verify a model's files into the cache")
    s.add_argument("model")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_download)

    s = sub.add_parser("convert", help="write one safetensors file holding exactly the model's tensors")
    s.add_argument("model")
    s.add_argument("--out", type=Path, required=True, help="output .safetensors file")
    s.add_argument("--weights-dir", type=Path, help="folder holding the upstream files by their official names")
    s.add_argument("--image-only", action="store_true", help="leave out the CLIP text encoder (~0.5 GB)")
    s.add_argument("--no-download", action="store_true", help="use local files only")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_convert)

    s = sub.add_parser("predict", help="masks and names for box/point prompts on one image (or every object)",
                       description="Each --box, --point, --points or --prompt is one object, in order. "
                                   "Coordinates are pixels of the original image. Without prompts, "
                                   "--everything segments and names every object and --find NAME finds "
                                   "every instance of a class.")
    s.add_argument("image", type=Path)
    s.add_argument("--box", action=_prompt_action("box"), metavar="X0,Y0,X1,Y1", help="a box prompt")
    s.add_argument("--point", action=_prompt_action("point"), metavar="X,Y[,1|0]",
                   help="a single-point prompt (label 1 positive, default)")
    s.add_argument("--points", action=_prompt_action("points"), metavar="'X,Y[,L] X,Y[,L] ...'",
                   help="one prompt made of several points (0 = negative)")
    s.add_argument("--prompt", action=_prompt_action("json"), metavar="JSON",
                   help='one prompt as JSON: \'{"box": [x0,y0,x1,y1], "points": [[x,y,1]]}\'')
    s.add_argument("--vocab", default=None, help="coco, lvis, imagenet21k, a file, or a `vocab build` folder "
                                                  "(default: the model's vocabulary)")
    s.add_argument("--mode", choices=["head", "fused"], default=None, help="recognition mode (default: the model's)")
    s.add_argument("--top-k", type=int, default=5)
    s.add_argument("--channels", help="channel indices for multi-channel images, e.g. 0 or 0,2,1")
    s.add_argument("--out", type=Path, required=True, help="result JSON")
    s.add_argument("--overlay", type=Path, help="also write a PNG with masks, boxes and labels")
    from .cli_auto import add_auto_options, register_label_command

    add_auto_options(s)
    add_model_options(s)
    s.set_defaults(func=_cmd_predict)
    register_label_command(sub)

    s = sub.add_parser("embed", help="compute image embeddings once (e.g. on a GPU) and save them")
    s.add_argument("images", nargs="+", type=Path)
    s.add_argument("--out", type=Path, required=True, help="output folder")
    s.add_argument("--format", choices=["safetensors", "zarr"], default="safetensors",
                   help="file format (both carry the model signature)")
    s.add_argument("--channels", help="channel indices for multi-channel images")
    add_model_options(s)
    s.set_defaults(func=_cmd_embed)

    s = sub.add_parser("vocab", help="vocabulary tools")
    vsub = s.add_subparsers(dest="vocab_command", required=True)
    v = vsub.add_parser("build", help="compute and save the text classifier of a vocabulary file")
    v.add_argument("file", help="vocabulary file (.txt, .json, .yaml) or preset name")
    v.add_argument("--out", type=Path, required=True, help="output folder")
    add_model_options(v)
    v.set_defaults(func=_cmd_vocab_build)

    s = sub.add_parser("export-onnx", help="export prompt encoder + mask decoder + recognition to ONNX")
    s.add_argument("--model", default="ovsam-lvis")
    s.add_argument("--weights-dir", type=Path)
    s.add_argument("--mode", choices=["head", "fused"], default="head")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=_cmd_export_onnx)
    from .cli_train import register_train_commands  # train / eval / synth (heavy imports inside)

    register_train_commands(sub)
    _add_plugin_commands(sub)
    return p


#: Entry-point group through which adapters add sub-commands (e.g. ``ovsam fiftyone install``).
#: Each entry point is a function ``register(subparsers) -> None``; it must not import its host
#: application at import time (only inside the command it adds).
PLUGIN_GROUP = "ovsam.cli"


def _add_plugin_commands(sub) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()(sub)
        except Exception as e:  # noqa: BLE001 - a broken adapter must not break the core CLI
            logging.getLogger(__name__).debug("plugin command %r unavailable: %s", ep.name, e)


def _user_errors() -> tuple:
    from .weights.checkpoint import CheckpointError
    from .weights.hub import WeightsError

    return (UserError, CheckpointError, WeightsError, KeyError, ValueError, FileNotFoundError,
            IsADirectoryError, PermissionError)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="ovsam: %(levelname)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except _user_errors() as e:
        if args.verbose:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"ovsam: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("ovsam: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
