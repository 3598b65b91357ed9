"""Reading checkpoint files and mapping their keys onto the model, strictly.

Supported files: PyTorch pickles (read with ``torch.load(weights_only=True)``; flat or
``{'state_dict': ...}``), safetensors, OpenAI's TorchScript CLIP archives (``RN50x16.pt``)
and bare classifier tensors.
"""
from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch

from .registry import KeyRule, WeightFile

StateDict = Dict[str, torch.Tensor]
_WRAPPERS = ("state_dict", "model", "module")
_MAX_LISTED = 25


class CheckpointError(RuntimeError):
    """A weight file cannot be read or does not fit the architecture."""


class CheckpointMismatchError(CheckpointError):
    """Strict loading failed; the message lists missing, unexpected and mis-shaped keys."""

    def __init__(self, message: str, missing: List[str], unexpected: List[str], mismatched: List[str]):
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())


def _torch_load_mapped(path: Path):
    """``torch.load(weights_only=True)``, memory-mapped when the file allows it.

    Mapped tensors are copy-on-write views of the file: reading a checkpoint costs no memory
    until a tensor is touched, and keys nobody uses (e.g. SAM ViT-H's image encoder, 2.5 GB)
    are never read. Files in the legacy (pre-zip) format are read whole.
    """
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise
        return torch.load(str(path), map_location="cpu", weights_only=True)


def read_checkpoint(path: Union[str, Path]) -> Union[StateDict, torch.Tensor]:
    """Read a weight file into a flat ``{key: tensor}`` dict (or a bare tensor).

    safetensors and zip-format PyTorch files are memory-mapped (see :func:`_torch_load_mapped`).

    Unwraps ``{'state_dict': ...}`` (and ``model``/``module``) containers and strips a
    ``module.`` prefix shared by every key (DistributedDataParallel checkpoints).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        elif _is_torchscript(path):
            # OpenAI's CLIP files are TorchScript archives, which weights_only cannot read.
            # Their sha256 is verified before loading (see ovsam_core.weights.hub).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
                obj = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        else:
            obj = _torch_load_mapped(path)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name and a fix
        raise CheckpointError(f"cannot read weight file {path}: {e}. Is it complete? "
                              "Delete it and download it again.") from e
    if isinstance(obj, torch.Tensor):
        return obj
    while isinstance(obj, Mapping):
        inner = [w for w in _WRAPPERS if isinstance(obj.get(w), Mapping)]
        if not inner:
            break
        obj = obj[inner[0]]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    sd = dict(obj)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _apply_rule(rule: KeyRule, key: str) -> str:
    rest = key[len(rule.src):]
    head, dot, tail = rest.partition(".")
    for old, new in rule.rename:
        if head == old:
            rest = new + dot + tail
            break
    return rule.dst + rest


@dataclass
class MappedWeights:
    """Tensors sorted by target (``image``, ``text``, ``classifier``) with their origin."""

    tensors: Dict[str, StateDict] = field(default_factory=lambda: {"image": {}, "text": {}})
    origin: Dict[Tuple[str, str], str] = field(default_factory=dict)
    unexpected: List[str] = field(default_factory=list)
    classifier: Union[torch.Tensor, None] = None


def map_file(wf: WeightFile, path: Union[str, Path], into: MappedWeights,
             targets: Optional[Iterable[str]] = None) -> MappedWeights:
    """Map one file's keys by ``wf.rules``; later files override earlier ones (upstream order).

    ``targets`` (default all) limits which targets (``image``, ``text``, ``classifier``) are
    kept: the others are checked for unexpected keys but never read.
    """
    keep = None if targets is None else set(targets)
    if keep is not None and not any(r.target in keep for r in wf.rules):
        return into
    obj = read_checkpoint(path)
    name = Path(path).name
    if isinstance(obj, torch.Tensor):
        if not any(r.target == "classifier" for r in wf.rules):
            raise CheckpointError(f"{name} holds a bare tensor, expected a state dict for role {wf.role!r}")
        into.classifier = obj.float()
        return into
    for key, value in obj.items():
        rule = next((r for r in wf.rules if r.target != "classifier" and key.startswith(r.src)), None)
        if rule is None:
            if not (wf.ignore and key.startswith(wf.ignore)):
                into.unexpected.append(f"{key} (from {name})")
            continue
        if keep is not None and rule.target not in keep:
            continue
        dst = _apply_rule(rule, key)
        into.tensors[rule.target][dst] = value.float() if value.is_floating_point() else value
        into.origin[(rule.target, dst)] = name
    return into


def _listing(title: str, keys: List[str]) -> str:
    if not keys:
        return ""
    shown = "\n".join(f"    {k}" for k in keys[:_MAX_LISTED])
    more = f"\n    ... and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return f"\n  {title} ({len(keys)}):\n{shown}{more}"


def check_keys(
    expected: Mapping[str, torch.Tensor],
    got: Mapping[str, torch.Tensor],
    what: str,
    extra_unexpected: Iterable[str] = (),
    hint: str = "",
) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``got`` has exactly the keys/shapes of ``expected``."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected)) + list(extra_unexpected)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(got) if tuple(got[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or mismatched:
        msg = (f"the weights do not match {what}:"
               + _listing("missing keys", missing)
               + _listing("unexpected keys", unexpected)
               + _listing("shape mismatches", mismatched)
               + (f"\n{hint}" if hint else ""))
        raise CheckpointMismatchError(msg, missing, unexpected, mismatched)


def load_strict(module: torch.nn.Module, state: StateDict, what: str, **kw) -> None:
    """Check keys with a readable diff, then ``load_state_dict(strict=True)``."""
    check_keys(module.state_dict(), state, what, **kw)
    module.load_state_dict(state, strict=True)
