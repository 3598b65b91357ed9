"""Copies of a module with some descendants replaced, sharing everything else (for exported graphs)."""
from __future__ import annotations

import copy
from typing import Dict

from torch import nn

__all__ = ["with_replaced"]


def with_replaced(module: nn.Module, replace: Dict[str, nn.Module]) -> nn.Module:
    """A shallow copy of ``module`` with the named descendants replaced.

    The modules on the path to each replaced one are shallow-copied too; everything else
    (other modules, parameters, buffers) is shared with ``module``, which is left as it was
    (another thread may be running it).
    """
    root = _shallow(module)
    copies = {"": root}
    for path, new in replace.items():
        *parents, leaf = path.split(".")
        node, prefix = root, ""
        for part in parents:
            prefix = f"{prefix}.{part}" if prefix else part
            if prefix not in copies:
                copies[prefix] = _shallow(node._modules[part])
                node._modules[part] = copies[prefix]
            node = copies[prefix]
        node._modules[leaf] = new
    return root


def _shallow(mod: nn.Module) -> nn.Module:
    c = copy.copy(mod)
    c._modules = dict(mod._modules)
    return c
