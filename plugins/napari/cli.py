"""``ovsam napari``: open napari with the ovsam widget (registered through ``ovsam.cli``).

Importing this module and :func:`register` import neither napari nor Qt nor torch; the
command imports them when it runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

WIDGET = "Open-Vocabulary SAM"
SAMPLES = ("cells", "shapes", "large")


def register(subparsers) -> None:
    """Add ``ovsam napari`` to the ``ovsam`` command line."""
    s = subparsers.add_parser(
        "napari", help="open napari with the ovsam widget (needs the napari extra and a Qt binding)",
        description="Open napari with the ovsam dock widget: click or draw a box on an image, get its mask "
                    "and its class name; commit objects into a Labels layer and export them.")
    s.add_argument("images", nargs="*", type=Path, help="images to open (any format napari reads)")
    s.add_argument("--sample", choices=SAMPLES, help="open an ovsam sample image instead")
    s.add_argument("--model", default=None, help="registered model (default ovsam-lvis; see `ovsam models`)")
    s.add_argument("--weights-dir", type=Path, help="folder holding the model's files by their official names")
    s.add_argument("--device", default=None, help="auto, cpu, cuda or mps")
    s.add_argument("--dtype", default=None, help="image-encoder precision: auto (default), fp32 ... (as ovsam predict)")
    s.add_argument("--vocab", default=None, help="coco, lvis, imagenet21k, a vocabulary file, or a `vocab build` folder")
    s.add_argument("--classes", default=None, help="class names separated by commas, synonyms joined by | ('nucleus, mitochondrion|mito')")
    s.add_argument("--embeddings-dir", type=Path, help="a folder written by `ovsam embed --out DIR`")
    s.set_defaults(func=_cmd_napari)


def open_viewer(args: argparse.Namespace):
    """The viewer with the images and the widget (set from ``args``); returns (viewer, widget)."""
    # torch (and Triton) first: a GL context created before them can crash their import
    import ovsam_core  # noqa: F401

    try:
        import napari
    except ImportError as e:
        raise ValueError(f"napari is not installed ({e}); run: pip install \"ovsam[napari]\" pyqt6") from None
    for p in args.images:
        if not p.exists():
            raise FileNotFoundError(f"no such image: {p}")
    viewer = napari.Viewer(title="ovsam")
    if args.sample:
        viewer.open_sample("ovsam", args.sample)
    for p in args.images:
        viewer.open(str(p))
    _, widget = viewer.window.add_plugin_dock_widget("ovsam", WIDGET)
    vocab = args.vocab
    if args.classes:
        from ovsam_core import parse_vocabulary_text

        vocab = parse_vocabulary_text(args.classes)  # "a, b|synonym" (one syntax for every host)
    elif vocab is not None and Path(vocab).exists():
        vocab = str(Path(vocab).resolve())
    widget.set_options(model=args.model, device=args.device, precision=args.dtype, vocabulary=vocab,
                       embeddings_dir=str(args.embeddings_dir) if args.embeddings_dir else None)
    if args.weights_dir:
        widget.controller.configure(weights_dir=str(args.weights_dir))
    if len(viewer.layers):
        widget.start_session()
    return viewer, widget


def _cmd_napari(args: argparse.Namespace) -> int:
    import napari

    open_viewer(args)
    napari.run()
    return 0
