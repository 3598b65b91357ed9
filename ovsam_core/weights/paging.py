"""Drop the resident pages of memory-mapped weights once a stage has used them.

:func:`~ovsam_core.weights.loader.load_model` makes the parameters copy-on-write views of the
memory-mapped weight files. Pages of such a view that were read but never written are clean
copies of the page cache: ``madvise(MADV_DONTNEED)`` removes them from this process (its RSS)
without losing anything, and the next use maps them again from the page cache (a minor page
fault per 64 KiB, ~0.1 s per GB, no disk read while the file stays cached).

This lets an encoder hold only the weights of the stage that runs (CLIP trunk 0.67 GB, then
SAM2CLIP neck 0.52 GB for RN50x16) instead of all of them. Only tensors whose storage lies in
a *file* mapping are touched, and only when they have not been written (``requires_grad``
False, and in-place changes would have made them anonymous copy-on-write pages: releasing
those would revert them, so modules that may have been modified must not be released).
"""
from __future__ import annotations

import ctypes
import mmap
import os
from bisect import bisect_right
from typing import Iterable, List, Tuple

import torch

_MADV_DONTNEED = 4
_PAGE = mmap.PAGESIZE


def _file_mappings() -> List[Tuple[int, int]]:
    """(start, end) of this process's mappings backed by a regular file, sorted."""
    out = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) < 6 or not parts[5].startswith("/"):
                    continue
                if parts[5].startswith(("/dev/", "/proc/", "/sys/")):
                    continue
                lo, hi = (int(v, 16) for v in parts[0].split("-"))
                out.append((lo, hi))
    except OSError:
        return []
    return sorted(out)


def _tensors(modules: Iterable[torch.nn.Module]) -> List[torch.Tensor]:
    seen, out = set(), []
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            if t.device.type != "cpu" or t.requires_grad or t.data_ptr() in seen:
                continue
            seen.add(t.data_ptr())
            out.append(t)
    return out


def release_mapped_weights(*modules: torch.nn.Module) -> int:
    """Remove the resident pages of the modules' file-mapped weights from this process.

    Safe for frozen inference weights loaded by ``load_model`` (their values are unchanged:
    the next use re-reads the same file pages). Tensors in ordinary (anonymous) memory are left
    alone. Returns the number of bytes advised away (0 off Linux).
    """
    if not hasattr(os, "sched_getaffinity"):  # Linux only (/proc/self/maps, madvise semantics)
        return 0
    maps = _file_mappings()
    if not maps:
        return 0
    starts = [lo for lo, _ in maps]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for t in _tensors(modules):
        nbytes = t.untyped_storage().nbytes()
        ptr = t.untyped_storage().data_ptr()
        i = bisect_right(starts, ptr) - 1
        if nbytes < _PAGE or i < 0 or not (maps[i][0] <= ptr and ptr + nbytes <= maps[i][1]):
            continue
        lo = -(-ptr // _PAGE) * _PAGE          # whole pages inside the tensor only
        hi = (ptr + nbytes) // _PAGE * _PAGE
        if hi > lo and libc.madvise(lo, hi - lo, _MADV_DONTNEED) == 0:
            released += hi - lo
    return released
