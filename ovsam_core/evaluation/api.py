"""Build the evaluated methods from names and options, and run an evaluation."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..text.classifier import build_classifier
from ..training.data import CocoInstances
from .methods import Method, OVSAMMethod

PathLike = Union[str, Path]
BASELINES = ("image-crop", "feature-crop")


def _classifier_for(loaded, dataset: CocoInstances, progress: bool) -> torch.Tensor:
    """The model's shipped classifier when it is for this vocabulary, else built from the names."""
    shipped = loaded.classifier
    if (shipped is not None and dataset.vocabulary == loaded.spec.vocabulary
            and shipped.shape[0] == len(dataset.class_names)):
        return shipped
    if loaded.text_encoder is None:
        raise ValueError(f"model {loaded.spec.name!r} was loaded without a text encoder")
    return build_classifier(loaded.text_encoder, dataset.class_names, progress=progress)


def build_methods(
    dataset: CocoInstances,
    *,
    model: Optional[str] = "ovsam-lvis-eval",
    weights_dir: Optional[PathLike] = None,
    weights: Optional[PathLike] = None,
    mode: Optional[str] = None,
    clip_box_frame: str = "original",
    baselines: Sequence[str] = (),
    sam: str = "vit_h",
    sam_checkpoint: Optional[PathLike] = None,
    clip_model: Optional[str] = None,
    clip_weights_dir: Optional[PathLike] = None,
    device: str = "cpu",
    download: bool = True,
    progress: bool = True,
) -> Tuple[List[Method], int]:
    """The methods to compare and the frame size for centre points.

    Args:
        model: a registered OVSAM model (None = baselines only).
        mode: ``head`` / ``fused`` (default: the model's).
        baselines: any of ``image-crop``, ``feature-crop``.
        sam / sam_checkpoint: the baselines' SAM (``vit_h``, ``vit_l``, ``vit_b`` + checkpoint,
            or ``tiny``).
        clip_model: registered model whose CLIP (visual + text) the baselines use (default:
            ``model``, else ``ovsam-lvis``).
    """
    from ..weights.loader import load_model

    bad = set(baselines) - set(BASELINES)
    if bad:
        raise ValueError(f"unknown baselines {sorted(bad)}; choose from {', '.join(BASELINES)}")
    methods: List[Method] = []
    frame = 1024
    loaded = None
    if model:
        loaded = load_model(model, weights_dir, weights=weights, device=device, download=download, progress=progress)
        frame = loaded.model.cfg.image_size
        mode = mode or loaded.spec.mode
        clf = _classifier_for(loaded, dataset, progress)
        methods.append(OVSAMMethod(loaded, clf, mode=mode, base=dataset.base_mask(), known=dataset.known_mask(),
                                   clip_box_frame=clip_box_frame, device=device,
                                   name=f"{model} ({mode})"))
    if baselines:
        from .baselines import FeatureCropBaseline, ImageCropBaseline, build_sam

        cname = clip_model or model or "ovsam-lvis"
        if loaded is not None and cname == model and clip_weights_dir is None:
            clip_loaded = loaded
        else:
            clip_loaded = load_model(cname, clip_weights_dir or weights_dir, device=device, download=download,
                                     progress=progress)
            if loaded is None:
                frame = clip_loaded.model.cfg.image_size
        clip_clf = build_classifier(clip_loaded.text_encoder, dataset.class_names, progress=progress)
        sam_model = build_sam(sam, str(sam_checkpoint) if sam_checkpoint else None,
                              image_size=frame if sam == "tiny" else 1024)
        ccfg = clip_loaded.model.cfg
        visual = clip_loaded.model.backbone
        for b in baselines:
            if b == "image-crop":
                methods.append(ImageCropBaseline(sam_model, visual, clip_clf, ccfg.clip_pool_size * 32, device=device,
                                                 name=f"Image-Crop (SAM {sam} + CLIP {cname})"))
            else:
                methods.append(FeatureCropBaseline(sam_model, visual, clip_clf, ccfg.clip_pool_size * 32, device=device,
                                                   frame_size=frame, pool_size=ccfg.clip_pool_size,
                                                   name=f"Feature-Crop (SAM {sam} + CLIP {cname})"))
    if not methods:
        raise ValueError("nothing to evaluate: give a model and/or baselines")
    return methods, frame


def run_eval(
    images: PathLike,
    annotations: PathLike,
    *,
    vocabulary: Optional[str] = None,
    novel_classes: Sequence[str] = (),
    detections: Optional[PathLike] = None,
    prompts: Sequence[str] = ("box", "point"),
    score_mode: str = "det*cls",
    max_images: Optional[int] = None,
    out_dir: Optional[PathLike] = None,
    progress: bool = True,
    **method_kw: Any,
) -> Dict[str, Any]:
    """Load the dataset, build the methods (see :func:`build_methods`) and evaluate them."""
    from .runner import evaluate

    ds = CocoInstances(annotations, images, vocabulary, novel_classes)
    methods, frame = build_methods(ds, progress=progress, **method_kw)
    dets = None
    if detections:
        dets = json.loads(Path(detections).read_text())
        if not isinstance(dets, list):
            raise ValueError(f"{detections}: expected a COCO results list [{{image_id, bbox, score}}, ...]")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in method_kw.items()
                if k in ("model", "mode", "clip_box_frame", "baselines", "sam", "clip_model")}
    settings["baselines"] = list(settings.get("baselines") or [])
    return evaluate(ds, methods, prompts=prompts, point_frame=frame, detections=dets, score_mode=score_mode,
                    max_images=max_images, out_dir=Path(out_dir) if out_dir else None, progress=progress,
                    settings=settings)
