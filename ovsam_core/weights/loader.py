"""Build a registered model and load its weights (construction and loading stay separate)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

import torch

from ..config import ArchConfig
from ..modeling import OVSAM
from ..text.encoder import TextEncoder
from .checkpoint import CheckpointError, MappedWeights, check_keys, load_strict, map_file, read_checkpoint
from .registry import ModelSpec, get_model_spec

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
FUSED_FORMAT = "ovsam-fused-v1"
TEXT_PREFIX = "text_encoder."
CLASSIFIER_KEY = "classifier"


@dataclass
class LoadedModel:
    """A ready model: the image model, its CLIP text encoder and the packaged classifier.

    Attributes:
        spec: the registry entry.
        model: :class:`~ovsam_core.modeling.OVSAM` in eval mode.
        text_encoder: the CLIP text tower (None when loaded with ``with_text=False``).
        classifier: the (C, P, D) classifier shipped with the weights, or None.
        weights_id: a short identifier of the loaded weights (file hashes), for cache keys.
    """

    spec: ModelSpec
    model: OVSAM
    text_encoder: Optional[TextEncoder]
    classifier: Optional[torch.Tensor]
    weights_id: str


def build_model(arch: Union[str, ArchConfig]) -> OVSAM:
    """Construct the image model with random weights (no loading)."""
    from ..config import ARCHS

    cfg = ARCHS[arch] if isinstance(arch, str) else arch
    return OVSAM(cfg)


def _seeded(cfg: ArchConfig, seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = OVSAM(cfg)
        text = TextEncoder(cfg)
    return model, text


def _files_id(paths) -> str:
    """A short content key of weight files (name, size, mtime): changes when any file does."""
    import hashlib

    items = []
    for p in sorted(Path(p) for p in paths):
        st = p.stat()
        items.append([p.name, st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def _fused_path(spec: ModelSpec, weights: Optional[PathLike], weights_dir: Optional[PathLike]) -> Optional[Path]:
    if weights is not None:
        return Path(weights)
    if weights_dir is not None and (Path(weights_dir) / f"{spec.name}.safetensors").is_file():
        return Path(weights_dir) / f"{spec.name}.safetensors"
    return None


def _read_fused(path: Path, spec: ModelSpec) -> MappedWeights:
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"weight file not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FUSED_FORMAT:
        raise CheckpointError(f"{path} is not an ovsam fused file (write one with `ovsam convert`)")
    if meta.get("arch") != spec.arch:
        raise CheckpointError(f"{path} holds architecture {meta.get('arch')!r}, but model {spec.name!r} "
                              f"needs {spec.arch!r}; pick the matching --model")
    sd = read_checkpoint(path)
    mapped = MappedWeights()
    for k, v in sd.items():
        if k == CLASSIFIER_KEY:
            mapped.classifier = v
        elif k.startswith(TEXT_PREFIX):
            mapped.tensors["text"][k[len(TEXT_PREFIX):]] = v
        else:
            mapped.tensors["image"][k] = v
    return mapped


def load_weights(
    spec: ModelSpec,
    weights_dir: Optional[PathLike] = None,
    weights: Optional[PathLike] = None,
    download: bool = True,
    progress: bool = True,
    strict_hashes: bool = False,
) -> tuple[MappedWeights, str]:
    """Resolve and read every file of ``spec`` into mapped tensors (no model involved)."""
    fused = _fused_path(spec, weights, weights_dir)
    if fused is not None:
        return _read_fused(fused, spec), _files_id([fused])
    from .hub import candidate_for, resolve_model_files  # network code only when files are needed

    paths = resolve_model_files(spec, weights_dir, download=download, progress=progress,
                                strict_hashes=strict_hashes)
    mapped = MappedWeights()
    for wf in spec.files:
        map_file(candidate_for(wf, paths[wf.role]), paths[wf.role], mapped)
    return mapped, _files_id(paths.values())


def load_model(
    name: str,
    weights_dir: Optional[PathLike] = None,
    *,
    weights: Optional[PathLike] = None,
    device: Union[str, torch.device] = "cpu",
    with_text: bool = True,
    download: bool = True,
    progress: bool = True,
    strict_hashes: bool = False,
) -> LoadedModel:
    """Build the registered model ``name`` and load its weights strictly.

    Weights are looked up in this order: ``weights`` (a fused file written by
    ``ovsam convert``), ``weights_dir/<name>.safetensors``, the upstream files by their
    official names in ``weights_dir``, the cache (``OVSAM_CACHE_DIR``), then a download.
    ``ovsam-test`` has no files: its weights are a seeded random init.

    Downloaded and cached files are always checked against their sha256. Files in
    ``weights_dir`` that differ from the official release (e.g. your own trained weights in
    the upstream layout) load with a warning, or fail with ``strict_hashes=True``. Keys are
    always loaded strictly: a mismatch raises
    :class:`~ovsam_core.weights.checkpoint.CheckpointMismatchError` listing the keys.
    """
    spec = get_model_spec(name)
    cfg = spec.arch_config
    model, text = _seeded(cfg)
    classifier = None
    if spec.files or weights is not None or _fused_path(spec, None, weights_dir):
        mapped, ident = load_weights(spec, weights_dir, weights, download, progress, strict_hashes)
        hint = ("Check that the files belong to this model (see `ovsam models`), or write a fused "
                "file with `ovsam convert`.")
        check_keys(model.state_dict(), mapped.tensors["image"], f"model {name!r} (arch {spec.arch!r})",
                   extra_unexpected=mapped.unexpected, hint=hint)
        model.load_state_dict(mapped.tensors["image"], strict=True)
        if with_text:
            load_strict(text, mapped.tensors["text"], f"the CLIP text encoder of {name!r}", hint=hint)
        classifier = mapped.classifier
    else:
        ident = "seed:0"
    model.eval().requires_grad_(False).to(device)
    text = text.eval().requires_grad_(False).to(device) if with_text else None
    return LoadedModel(spec=spec, model=model, text_encoder=text, classifier=classifier, weights_id=ident)


def load_text_encoder(name: str, weights_dir: Optional[PathLike] = None, **kw) -> TextEncoder:
    """The CLIP text encoder of a registered model (loads the whole model's files)."""
    loaded = load_model(name, weights_dir, with_text=True, **kw)
    assert loaded.text_encoder is not None
    return loaded.text_encoder
