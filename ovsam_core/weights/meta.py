"""Build modules without allocating their weights, then adopt checkpoint tensors as parameters.

Loading the usual way holds every weight twice (a random init plus the checkpoint) and
touches the random init. Here the module is built on PyTorch's ``meta`` device (shapes only),
and ``load_state_dict(assign=True)`` makes the checkpoint tensors its parameters. With
memory-mapped checkpoints (:func:`~ovsam_core.weights.checkpoint.read_checkpoint`) the
weights are read from the file as they are first used, and never copied.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, TypeVar

import torch
from torch import nn

from .checkpoint import check_keys

M = TypeVar("M", bound=nn.Module)


def empty_module(factory: Callable[..., M], *args, **kwargs) -> M:
    """``factory(*args, **kwargs)`` built on the meta device: no memory, no random init."""
    with torch.device("meta"):
        return factory(*args, **kwargs)


def _rebuild_nonpersistent(module: nn.Module) -> None:
    """Give meta non-persistent buffers (not in any checkpoint) their values.

    The only one in ovsam's modules is open_clip's causal text mask (``attn_mask``, -inf above
    the diagonal). Any other raises, so that a new one is noticed rather than left on meta.
    """
    for name, buf in list(module.named_buffers()):
        if not buf.is_meta:
            continue
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        if leaf == "attn_mask" and buf.dim() == 2 and buf.shape[0] == buf.shape[1]:
            owner.register_buffer(leaf, torch.full(tuple(buf.shape), float("-inf")).triu_(1), persistent=False)
        else:
            raise RuntimeError(f"buffer {name!r} is not in the checkpoint and has no rebuild rule")


def assign_weights(module: M, state: Dict[str, torch.Tensor], what: str,
                   extra_unexpected: Iterable[str] = (), hint: str = "") -> M:
    """Check keys strictly (readable diff), then make ``state``'s tensors ``module``'s weights.

    Tensors are adopted as they are (``assign=True``): pass fp32 tensors for an fp32 model.
    Raises :class:`~ovsam_core.weights.checkpoint.CheckpointMismatchError` on any key mismatch.
    """
    check_keys(module.state_dict(), state, what, extra_unexpected=extra_unexpected, hint=hint)
    module.load_state_dict(state, strict=True, assign=True)
    _rebuild_nonpersistent(module)
    return module
