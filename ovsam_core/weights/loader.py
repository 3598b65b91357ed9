"""Build a registered model and load its weights (construction and loading stay separate)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Union

import torch

from ..config import ArchConfig
from ..modeling import OVSAM
from ..text.encoder import TextEncoder
from .checkpoint import CheckpointError, MappedWeights, map_file, read_checkpoint
from .meta import assign_weights, empty_module
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
        text_encoder: the CLIP text tower (None when loaded with ``with_text=False``; loaded on
            first access with ``with_text="lazy"``).
        classifier: the (C, P, D) classifier shipped with the weights, or None.
        weights_id: a short identifier of the loaded weights (file hashes), for cache keys.
    """

    spec: ModelSpec
    model: OVSAM
    text_encoder: Optional[TextEncoder] = field(repr=False, compare=False)
    classifier: Optional[torch.Tensor]
    weights_id: str
    #: loads the text tower on first use of ``text_encoder`` (``load_model(with_text="lazy")``)
    text_loader: Optional[Callable[[], TextEncoder]] = field(default=None, repr=False, compare=False)

    @property
    def text_loaded(self) -> bool:
        """Whether the text tower is in memory (reading this never loads it)."""
        return self.__dict__.get("_text") is not None

    @property
    def has_text(self) -> bool:
        """Whether a text tower is loaded or can be loaded on demand (never loads it)."""
        return self.text_loaded or self.text_loader is not None

    def lazy_text_encoder(self) -> "TextEncoder":
        """A stand-in for :attr:`text_encoder` that loads the tower at its first use only.

        For APIs that take an encoder but may not need it (e.g. a classifier found in the
        disk cache).
        """
        return _LazyText(self)  # type: ignore[return-value]


class _LazyText:
    """Forwards every attribute to ``loaded.text_encoder`` (loading it on the first access)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self._loaded = loaded

    def __getattr__(self, name: str):
        return getattr(self._loaded.text_encoder, name)

    def __call__(self, *args, **kwargs):
        return self._loaded.text_encoder(*args, **kwargs)


def _get_text(self: LoadedModel) -> Optional[TextEncoder]:
    if self.__dict__.get("_text") is None and self.text_loader is not None:
        self.__dict__["_text"] = self.text_loader()
    return self.__dict__.get("_text")


def _set_text(self: LoadedModel, value: Optional[TextEncoder]) -> None:
    self.__dict__["_text"] = value


# A property set after the dataclass is built: ``LoadedModel(text_encoder=...)`` still works and
# ``loaded.text_encoder`` loads a lazy tower on first use.
LoadedModel.text_encoder = property(_get_text, _set_text, doc="The CLIP text tower (None without text).")


def build_model(arch: Union[str, ArchConfig]) -> OVSAM:
    """Construct the image model with random weights (no loading)."""
    from ..config import ARCHS

    cfg = ARCHS[arch] if isinstance(arch, str) else arch
    return OVSAM(cfg)


_LOAD_HINT = ("Check that the files belong to this model (see `ovsam models`), or write a fused "
              "file with `ovsam convert`.")


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


def packaged_weights_path(spec: ModelSpec) -> Optional[Path]:
    """The weight file shipped inside the package for ``spec`` (None when it ships none).

    Its sha256 is checked against the registry's ``packaged_sha256``: a damaged install
    raises :class:`CheckpointError` saying to reinstall.
    """
    if not spec.packaged:
        return None
    from importlib import resources

    path = Path(str(resources.files("ovsam_core.weights").joinpath("data", spec.packaged)))
    if not path.is_file():
        raise CheckpointError(f"the packaged weights of {spec.name!r} are missing ({path}); reinstall ovsam")
    if spec.packaged_sha256:
        from .hub import sha256_file

        got = sha256_file(path)
        if got != spec.packaged_sha256:
            raise CheckpointError(f"the packaged weights of {spec.name!r} ({path}) have sha256 {got[:12]}…, "
                                  f"expected {spec.packaged_sha256[:12]}…; reinstall ovsam")
    return path


def model_card(spec: ModelSpec) -> str:
    """The model card shipped with ``spec`` (markdown), or a one-line note when it has none."""
    if not spec.card:
        return f"{spec.name}: no model card; {spec.description}"
    from importlib import resources

    return resources.files("ovsam_core.weights").joinpath("data", spec.card).read_text("utf-8")


def _fused_path(spec: ModelSpec, weights: Optional[PathLike], weights_dir: Optional[PathLike]) -> Optional[Path]:
    if weights is not None:
        return Path(weights)
    if weights_dir is not None and (Path(weights_dir) / f"{spec.name}.safetensors").is_file():
        return Path(weights_dir) / f"{spec.name}.safetensors"
    return packaged_weights_path(spec)


def _read_fused(path: Path, spec: ModelSpec, targets: Optional[Iterable[str]] = None) -> MappedWeights:
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
    keep = set(targets) if targets is not None else {"image", "text", "classifier"}
    for k, v in sd.items():
        if k == CLASSIFIER_KEY:
            if "classifier" in keep:
                mapped.classifier = v
        elif k.startswith(TEXT_PREFIX):
            if "text" in keep:
                mapped.tensors["text"][k[len(TEXT_PREFIX):]] = v
        elif "image" in keep:
            mapped.tensors["image"][k] = v
    return mapped


def load_weights(
    spec: ModelSpec,
    weights_dir: Optional[PathLike] = None,
    weights: Optional[PathLike] = None,
    download: bool = True,
    progress: bool = True,
    strict_hashes: bool = False,
    targets: Optional[Iterable[str]] = None,
) -> tuple[MappedWeights, str]:
    """Resolve and read every file of ``spec`` into mapped tensors (no model involved).

    Files are memory-mapped where their format allows; ``targets`` (default all of ``image``,
    ``text``, ``classifier``) limits what is kept.
    """
    fused = _fused_path(spec, weights, weights_dir)
    if fused is not None:
        return _read_fused(fused, spec, targets), _files_id([fused])
    from .hub import candidate_for, resolve_model_files  # network code only when files are needed

    paths = resolve_model_files(spec, weights_dir, download=download, progress=progress,
                                strict_hashes=strict_hashes)
    mapped = MappedWeights()
    for wf in spec.files:
        map_file(candidate_for(wf, paths[wf.role]), paths[wf.role], mapped, targets)
    return mapped, _files_id(paths.values())


def load_model(
    name: str,
    weights_dir: Optional[PathLike] = None,
    *,
    weights: Optional[PathLike] = None,
    device: Union[str, torch.device] = "cpu",
    with_text: Union[bool, str] = True,
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

    Memory: the files are memory-mapped and the parameters are the mapped tensors (no copy);
    keys the model does not use are never read. ``with_text="lazy"`` loads the text tower
    (~0.5 GB for RN50x16) only when ``loaded.text_encoder`` is first used, i.e. when a
    vocabulary's classifier is not cached; ``with_text=False`` never loads it.
    """
    spec = get_model_spec(name)
    cfg = spec.arch_config
    if with_text not in (True, False, "lazy"):
        raise ValueError(f"with_text must be True, False or 'lazy', got {with_text!r}")
    if not (spec.files or weights is not None or _fused_path(spec, None, weights_dir)):
        model, text = _seeded(cfg)
        model.eval().requires_grad_(False).to(device)
        text = text.eval().requires_grad_(False).to(device) if with_text else None
        return LoadedModel(spec=spec, model=model, text_encoder=text, classifier=None, weights_id="seed:0")
    targets = ("image", "classifier", "text") if with_text is True else ("image", "classifier")
    mapped, ident = load_weights(spec, weights_dir, weights, download, progress, strict_hashes, targets)
    # Built on the meta device and loaded with assign=True: the parameters *are* the (mapped)
    # checkpoint tensors, so no random init and no second copy of the weights is ever made.
    model = assign_weights(empty_module(OVSAM, cfg), mapped.tensors["image"],
                           f"model {name!r} (arch {spec.arch!r})", extra_unexpected=mapped.unexpected,
                           hint=_LOAD_HINT)
    model.eval().requires_grad_(False).to(device)

    def load_text(text_tensors: Optional[Dict[str, torch.Tensor]] = None) -> TextEncoder:
        if text_tensors is None:
            text_tensors = load_weights(spec, weights_dir, weights, download, False, strict_hashes,
                                        ("text",))[0].tensors["text"]
        text = assign_weights(empty_module(TextEncoder, cfg), text_tensors,
                              f"the CLIP text encoder of {name!r}", hint=_LOAD_HINT)
        return text.eval().requires_grad_(False).to(device)

    loaded = LoadedModel(spec=spec, model=model, text_encoder=None, classifier=mapped.classifier,
                         weights_id=ident, text_loader=load_text if with_text == "lazy" else None)
    if with_text is True:
        loaded.text_encoder = load_text(mapped.tensors["text"])
    return loaded


def load_text_encoder(name: str, weights_dir: Optional[PathLike] = None, **kw) -> TextEncoder:
    """The CLIP text encoder of a registered model (loads the whole model's files)."""
    loaded = load_model(name, weights_dir, with_text=True, **kw)
    assert loaded.text_encoder is not None
    return loaded.text_encoder
