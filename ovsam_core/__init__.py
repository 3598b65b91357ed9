"""ovsam_core: Open-Vocabulary SAM in plain PyTorch (model, weights registry, text classifier).

Public API (everything an adapter may import)::

    from ovsam_core import load_model, list_models, build_classifier
    loaded = load_model("ovsam-lvis")               # resolves, verifies and loads the weights
    feats = loaded.model.extract_features(x)         # x: (1, 3, 1024, 1024) normalised, padded
    out = loaded.model.decode(feats, boxes=boxes)    # boxes: (N, 4) in the 1024 model frame
    logits = loaded.model.head_logits(out, loaded.classifier)   # (N, C + 1), background last

This package never imports a host application (napari, Qt, FiftyOne, Flask, Label Studio).
"""
from __future__ import annotations

__version__ = "0.1.0"

from .config import ARCHS, ArchConfig, OVSAM_RN50X16, OVSAM_TEST
from .modeling import OVSAM, HeadOutput, ImageFeatures, classify, fuse_logits
from .text import TextEncoder, VILD_TEMPLATES, build_classifier, load_classifier_file, split_label
from .weights.checkpoint import CheckpointError, CheckpointMismatchError, read_checkpoint
from .weights.registry import (KeyRule, ModelSpec, WeightFile, get_model_spec, list_models,
                               register_model, unregister_model)
from .weights.loader import LoadedModel, build_model, load_model, load_text_encoder
from .weights.hub import (HashMismatchError, WeightsError, WeightsNotFoundError, cache_dir,
                          download_model)
from .weights.convert import convert_model

__all__ = [
    "__version__", "ARCHS", "ArchConfig", "OVSAM_RN50X16", "OVSAM_TEST",
    "OVSAM", "HeadOutput", "ImageFeatures", "classify", "fuse_logits",
    "TextEncoder", "VILD_TEMPLATES", "build_classifier", "load_classifier_file", "split_label",
    "CheckpointError", "CheckpointMismatchError", "read_checkpoint",
    "KeyRule", "ModelSpec", "WeightFile", "get_model_spec", "list_models", "register_model",
    "unregister_model", "LoadedModel", "build_model", "load_model", "load_text_encoder",
    "HashMismatchError", "WeightsError", "WeightsNotFoundError", "cache_dir", "download_model",
    "convert_model",
]
