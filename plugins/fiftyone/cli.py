"""``ovsam fiftyone ...`` sub-commands (added to ``ovsam`` through the ``ovsam.cli`` entry point).

Nothing here imports FiftyOne until a command runs, so ``ovsam --help`` works without it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ovsam_core import require_package


def _cmd_install(args: argparse.Namespace) -> int:
    require_package("fiftyone", "fiftyone", "FiftyOne")
    from .install import install_plugin, install_zoo_source

    out = install_plugin(args.plugins_dir, overwrite=args.force)  # InstallError: a ValueError, printed by ovsam
    print(f"installed the @ovsam/ovsam plugin in {out}")
    if args.zoo:
        z = install_zoo_source(args.model_zoo_dir, overwrite=args.force)
        print(f"installed the ovsam zoo models in {z} (foz.load_zoo_model('ovsam-lvis'))")
    print("restart the FiftyOne App to see the operators (press ` and type 'ovsam')")
    return 0


def _cmd_label(args: argparse.Namespace) -> int:
    fo = require_package("fiftyone", "fiftyone", "FiftyOne")
    from .labeling import label_with_prompts

    if args.dataset not in fo.list_datasets():
        raise ValueError(f"no FiftyOne dataset named {args.dataset!r} (fiftyone datasets list)")
    ds = fo.load_dataset(args.dataset)
    summary = label_with_prompts(
        ds, args.prompt_field, args.label_field, model=args.model, vocabulary=args.vocab, mode=args.mode,
        top_k=args.top_k, skip_existing=args.skip_existing, overwrite=args.overwrite, device=args.device,
        progress=None if args.quiet else lambda f, m: print(f"\r{m}", end="", flush=True))
    if not args.quiet:
        print()
    print(f"labelled {summary['labelled']} samples ({summary['objects']} objects) into {args.label_field!r}; "
          f"skipped {summary['skipped_existing']} already labelled, {summary['skipped_no_prompts']} without "
          f"prompts; {summary['invalid_prompts']} invalid prompts, {summary['failed']} failed")
    return 0


def register(subparsers) -> None:
    """Adds ``ovsam fiftyone install`` and ``ovsam fiftyone label``."""
    s = subparsers.add_parser("fiftyone", help="FiftyOne: install the @ovsam/ovsam plugin, label datasets")
    sub = s.add_subparsers(dest="fiftyone_command", required=True)

    i = sub.add_parser("install", help="install the @ovsam/ovsam plugin into FiftyOne's plugins directory",
                       description="Copies the plugin to --plugins-dir, else FIFTYONE_PLUGINS_DIR / "
                                   "fo.config.plugins_dir (`fiftyone config plugins_dir`).")
    i.add_argument("--plugins-dir", type=Path, help="FiftyOne plugins directory (default: FiftyOne's)")
    i.add_argument("--zoo", action="store_true", help="also install the ovsam models as a zoo source")
    i.add_argument("--model-zoo-dir", type=Path, help="FiftyOne model zoo directory (default: FiftyOne's)")
    i.add_argument("--force", action="store_true", help="replace an installed copy")
    i.set_defaults(func=_cmd_install)

    lab = sub.add_parser("label", help="segment and name the prompts of a dataset field (resumable)")
    lab.add_argument("dataset", help="FiftyOne dataset name")
    lab.add_argument("--prompt-field", required=True, help="Detections (boxes) or Keypoints (points) field")
    lab.add_argument("--label-field", default="ovsam", help="output Detections field (default ovsam)")
    lab.add_argument("--vocab", default=None, help="coco, lvis, imagenet21k, a file, @prompt_labels or "
                                                   "'cat, dog|puppy' (default: the dataset's, else the model's)")
    lab.add_argument("--model", default="ovsam-lvis")
    lab.add_argument("--mode", choices=["head", "fused"], default=None)
    lab.add_argument("--top-k", type=int, default=5)
    lab.add_argument("--device", default="auto")
    lab.add_argument("--skip-existing", action="store_true", help="resume: leave labelled samples alone")
    lab.add_argument("--overwrite", action="store_true", help="replace existing labels")
    lab.add_argument("-q", "--quiet", action="store_true")
    lab.set_defaults(func=_cmd_label)
