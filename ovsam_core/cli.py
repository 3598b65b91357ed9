"""The ``ovsam`` command line: ``models``, ``download``, ``convert``.

User mistakes (unknown model, missing weights offline, bad paths) print one line starting
with ``ovsam: error:`` and exit with status 2; no traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

EXIT_USAGE = 2


class UserError(Exception):
    """An error caused by the command's input; printed without a traceback."""


def _cmd_models(args: argparse.Namespace) -> int:
    from .weights.hub import cache_dir, cache_status
    from .weights.registry import get_model_spec, list_models

    print(f"cache: {cache_dir()}")
    for name in list_models():
        spec = get_model_spec(name)
        status = cache_status(spec, args.weights_dir) if spec.files else {}
        ready = "ready" if all(status.values()) else f"{sum(status.values())}/{len(status)} files local"
        if not spec.files:
            ready = "no download needed"
        print(f"\n{name}  [arch {spec.arch}, mode {spec.mode}, vocabulary {spec.vocabulary}; {ready}]")
        print(f"  {spec.description}")
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


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="ovsam", description="Open-Vocabulary SAM: masks and names for clicks and boxes.")
    p.add_argument("--version", action="version", version=f"ovsam {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log details (and show tracebacks)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("models", help="list registered models, their files, licences and cache status")
    s.add_argument("--weights-dir", type=Path, help="also look for the files in this folder")
    s.set_defaults(func=_cmd_models)

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
    return p


def _user_errors() -> tuple:
    from .weights.checkpoint import CheckpointError
    from .weights.hub import WeightsError

    return (UserError, CheckpointError, WeightsError, KeyError, ValueError, FileNotFoundError)


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
