"""Keep Triton from loading into a process where a GL driver has already loaded LLVM.

On Linux, Mesa's GL drivers (llvmpipe, radeonsi, ...) load ``libLLVM``. Importing Triton
(which torch and torchvision import on start-up when it is installed, e.g. with CUDA wheels of
torch) *after* that crashes the process with a segmentation fault. napari creates its GL context
before a plugin widget is opened, so when the ovsam widget is the first to import torch we mark
Triton as unavailable (``sys.modules["triton"] = None``); torch then runs without it (only
``torch.compile`` kernels need it, ovsam does not). ``ovsam napari`` imports torch before it
opens the viewer, so there Triton stays available.
"""
from __future__ import annotations

import importlib.util
import logging
import sys

log = logging.getLogger(__name__)


def llvm_loaded() -> bool:
    """Whether a ``libLLVM`` shared library is mapped into this process (Linux only)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            return any("libLLVM" in line for line in f)
    except OSError:
        return False


def guard_triton() -> bool:
    """Block Triton when importing it now would crash; returns True when it was blocked."""
    if "triton" in sys.modules:
        return False
    try:
        if importlib.util.find_spec("triton") is None:
            return False
    except (ImportError, ValueError):
        return False
    if not llvm_loaded():
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]  # `import triton` now raises ImportError
    log.warning("ovsam: Triton disabled in this napari session (a GL driver loaded LLVM first, and "
                "importing Triton after it crashes); start napari with `ovsam napari` to keep it")
    return True
