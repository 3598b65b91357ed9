"""Label volumes that are never dense in memory: chunks are allocated when first written.

:class:`ChunkedLabels` has the array interface a viewer needs for a label layer's data
(``shape``, ``dtype``, ``ndim``, ``size``, ``__getitem__``; napari's Labels layer) and
:func:`pyramid` turns it into the levels of a multiscale label layer, so that the viewer only
ever reads the part of the canvas it draws, at the resolution it draws it. A 20,000 x 20,000 label image with a few objects costs a few chunks
(1 MiB each by default), not 1.6 GB.

Indexing follows NumPy's *basic* indexing (integers, slices with a positive step, ``...``).
Indexing with slices returns a lazy :class:`LabelsWindow` (materialised by ``np.asarray``), so
that ``labels[:, y0:y1, x0:x1]`` of a tall stack does not read every plane; integers only give a
scalar. :func:`new_labels` picks numpy or chunked storage by size; :func:`plane_bbox` /
:func:`write_block` read and write 2-D blocks of any label array (numpy, zarr, chunked).
"""
from __future__ import annotations

import itertools
import math
import operator
import threading
from typing import Dict, Iterator, List, Sequence, Tuple, Union

import numpy as np

Axis = Union[int, range]

__all__ = ["ChunkedLabels", "LabelsWindow", "StridedLabels", "pyramid", "new_labels", "plane_bbox", "write_block",
           "max_label", "DENSE_MAX"]

#: Label volumes with more pixels than this are chunked (never dense), e.g. 8192 x 8192.
DENSE_MAX = 1 << 26


def _normalize_key(key, axes: Sequence[Axis]) -> List[Axis]:
    """Apply a basic-indexing key to per-axis selections (ints stay, ranges are indexed)."""
    if not isinstance(key, tuple):
        key = (key,)
    live = [i for i, a in enumerate(axes) if isinstance(a, range)]
    n_ell = sum(k is Ellipsis for k in key)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if n_ell:
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        fill = len(live) - (len(key) - 1)
        key = key[:i] + (slice(None),) * max(fill, 0) + key[i + 1:]
    if len(key) > len(live):
        raise IndexError(f"too many indices: {len(key)} for {len(live)} dimensions")
    key = key + (slice(None),) * (len(live) - len(key))
    out = list(axes)
    for ax, k in zip(live, key):
        r = out[ax]
        if isinstance(k, slice):
            if k.step is not None and operator.index(k.step) <= 0:
                raise IndexError("only positive slice steps are supported")
            out[ax] = r[k]
        elif k is None:
            raise IndexError("new axes (None) are not supported")
        else:
            try:
                i = operator.index(k)
            except TypeError:
                raise IndexError(f"only integers, slices and '...' are valid indices, got {type(k).__name__}") from None
            try:
                out[ax] = r[i]
            except IndexError:
                raise IndexError(f"index {i} is out of bounds for an axis of size {len(r)}") from None
    return out


class _Shaped:
    """``ndim``, ``size`` and ``len`` from ``shape``."""

    shape: Tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __len__(self) -> int:
        return self.shape[0]


class ChunkedLabels(_Shaped):
    """An integer label volume (..., H, W) whose (H, W) chunks exist only once written.

    Args:
        shape: full shape; the last two axes are rows and columns.
        dtype: an integer dtype (default int32).
        chunk: (rows, cols) of a chunk.
    """

    def __init__(self, shape: Sequence[int], dtype=np.int32, chunk: Tuple[int, int] = (512, 512)) -> None:
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) < 2:
            raise ValueError(f"labels need at least 2 dimensions, got shape {self.shape}")
        self.dtype = np.dtype(dtype)
        if self.dtype.kind not in "iu":
            raise ValueError(f"labels need an integer dtype, got {self.dtype}")
        self.chunk = (int(chunk[0]), int(chunk[1]))
        self._chunks: Dict[Tuple[int, ...], np.ndarray] = {}
        self._lock = threading.RLock()
        self.max_label = 0

    # ---- array interface (ndim, size, len: _Shaped)
    @property
    def allocated_bytes(self) -> int:
        """Bytes held by the allocated chunks (the true memory cost)."""
        return sum(c.nbytes for c in self._chunks.values() if c.ndim)

    @property
    def n_chunks(self) -> int:
        """Chunks that hold pixels (uniform ones included)."""
        return len(self._chunks)

    def __repr__(self) -> str:
        return (f"ChunkedLabels(shape={self.shape}, dtype={self.dtype}, chunk={self.chunk}, "
                f"allocated={self.n_chunks} chunks / {self.allocated_bytes} bytes)")

    def _axes(self) -> List[Axis]:
        return [range(s) for s in self.shape]

    def __getitem__(self, key):
        axes = _normalize_key(key, self._axes())
        if not any(isinstance(a, range) for a in axes):
            return self.dtype.type(self.read(axes)[()])
        return LabelsWindow(self, axes)

    def __array__(self, dtype=None, copy=None):
        out = self.read(self._axes())
        return out if dtype is None else out.astype(dtype)

    def __setitem__(self, key, value) -> None:
        axes = _normalize_key(key, self._axes())
        for a in axes[-2:]:
            if isinstance(a, range) and a.step != 1:
                raise IndexError("assignment supports contiguous slices only")
        sel_shape = tuple(len(a) for a in axes if isinstance(a, range))
        block = np.broadcast_to(np.asarray(value, dtype=self.dtype), sel_shape)
        block = block.reshape(tuple(len(a) if isinstance(a, range) else 1 for a in axes))
        lead = [a if isinstance(a, range) else range(a, a + 1) for a in axes[:-2]]
        ys, xs = (a if isinstance(a, range) else range(a, a + 1) for a in axes[-2:])
        for idx in itertools.product(*[range(len(a)) for a in lead]):
            plane = tuple(r[i] for r, i in zip(lead, idx))
            self.write(plane, ys.start, xs.start, block[idx])

    # ---- reading and writing
    def read(self, axes: Sequence[Axis]) -> np.ndarray:
        """Values at per-axis selections (ints or ranges with positive steps)."""
        lead, ys, xs = list(axes[:-2]), axes[-2], axes[-1]
        out_shape = tuple(len(a) for a in axes if isinstance(a, range))
        out = np.zeros(out_shape, self.dtype)
        lead_r = [a if isinstance(a, range) else range(a, a + 1) for a in lead]
        yr = ys if isinstance(ys, range) else range(ys, ys + 1)
        xr = xs if isinstance(xs, range) else range(xs, xs + 1)
        if not len(yr) or not len(xr) or any(not len(a) for a in lead_r):
            return out
        full = out.reshape(tuple(len(a) for a in lead_r) + (len(yr), len(xr)))
        ch, cw = self.chunk
        with self._lock:
            for idx in itertools.product(*[range(len(a)) for a in lead_r]):
                plane = tuple(r[i] for r, i in zip(lead_r, idx))
                dst_plane = full[idx]
                for cy, (oy, ly) in _chunk_parts(yr, ch):
                    for cx, (ox, lx) in _chunk_parts(xr, cw):
                        c = self._chunks.get(plane + (cy, cx))
                        if c is None:
                            continue
                        if c.ndim == 0:   # a uniform chunk, stored as its value
                            dst_plane[oy, ox] = c
                        else:
                            dst_plane[oy, ox] = c[ly, lx]
        return out

    def write(self, plane: Sequence[int], y0: int, x0: int, block: np.ndarray) -> None:
        """Write a 2-D ``block`` with its top-left corner at (y0, x0) of ``plane``.

        Chunks are only allocated where they hold more than one value.
        """
        plane = tuple(int(p) for p in plane)
        block = np.asarray(block)
        h, w = block.shape
        H, W = self.shape[-2:]
        if len(plane) != self.ndim - 2:
            raise IndexError(f"plane index {plane} does not match the {self.ndim - 2} leading axes")
        for p, s in zip(plane, self.shape[:-2]):
            if not 0 <= p < s:
                raise IndexError(f"plane index {plane} is outside the shape {self.shape}")
        if y0 < 0 or x0 < 0 or y0 + h > H or x0 + w > W:
            raise IndexError(f"block of {h}x{w} at ({y0}, {x0}) does not fit in {H}x{W}")
        ch, cw = self.chunk
        with self._lock:
            for cy, (oy, ly) in _chunk_parts(range(y0, y0 + h), ch):
                for cx, (ox, lx) in _chunk_parts(range(x0, x0 + w), cw):
                    part = block[oy, ox]
                    key = plane + (cy, cx)
                    c = self._chunks.get(key)
                    cshape = (min(ch, H - cy * ch), min(cw, W - cx * cw))
                    if c is None:
                        if not part.any():
                            continue
                        c = np.zeros(cshape, self.dtype)
                    elif c.ndim == 0:
                        if (part == c).all():
                            continue
                        c = np.full(cshape, c, self.dtype)
                    c[ly, lx] = part
                    if part.size:
                        self.max_label = max(self.max_label, int(part.max()))
                    # empty chunks are dropped and uniform ones kept as one value: memory follows
                    # the objects' outlines, not their areas
                    lo, hi = c.min(), c.max()
                    if lo == hi:
                        if lo == 0:
                            self._chunks.pop(key, None)
                        else:
                            self._chunks[key] = np.array(lo, self.dtype)
                    else:
                        self._chunks[key] = c

    def iter_tiles(self, tile: Tuple[int, int]) -> Iterator[np.ndarray]:
        """Tiles of ``tile`` size in plane, row, column order (edges zero-padded), e.g. for TIFF."""
        th, tw = tile
        H, W = self.shape[-2:]
        for plane in itertools.product(*[range(s) for s in self.shape[:-2]]):
            for y in range(0, H, th):
                for x in range(0, W, tw):
                    t = np.zeros((th, tw), self.dtype)
                    blk = self.read(list(plane) + [range(y, min(y + th, H)), range(x, min(x + tw, W))])
                    t[:blk.shape[0], :blk.shape[1]] = blk
                    yield t

    def chunk_keys(self) -> List[Tuple[int, ...]]:
        with self._lock:
            return list(self._chunks)


def _chunk_parts(r: range, size: int) -> Iterator[Tuple[int, Tuple[slice, slice]]]:
    """For a range of global indices, yield (chunk index, (out slice, in-chunk slice))."""
    if not len(r):
        return
    s = r.step
    first, last = r[0] // size, r[-1] // size
    for c in range(first, last + 1):
        lo, hi = c * size, (c + 1) * size
        i0 = max(0, -(-(lo - r.start) // s))
        i1 = min(len(r), -(-(hi - r.start) // s))
        if i1 <= i0:
            continue
        local0 = r[i0] - lo
        yield c, (slice(i0, i1), slice(local0, local0 + (i1 - i0 - 1) * s + 1, s))


class LabelsWindow(_Shaped):
    """A lazy, read-only view of a :class:`ChunkedLabels` (basic indexing composes)."""

    def __init__(self, base: ChunkedLabels, axes: Sequence[Axis]) -> None:
        self.base = base
        self._axes = list(axes)
        self.dtype = base.dtype

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(len(a) for a in self._axes if isinstance(a, range))

    def __getitem__(self, key):
        axes = _normalize_key(key, self._axes)
        if not any(isinstance(a, range) for a in axes):
            return self.dtype.type(self.base.read(axes)[()])
        return LabelsWindow(self.base, axes)

    def __array__(self, dtype=None, copy=None):
        out = self.base.read(self._axes)
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"LabelsWindow(shape={self.shape}, dtype={self.dtype})"


class StridedLabels(LabelsWindow):
    """Every ``factor``-th row and column of a :class:`ChunkedLabels`: a pyramid level."""

    def __init__(self, base: ChunkedLabels, factor: int) -> None:
        axes = [range(s) for s in base.shape[:-2]] + [range(0, base.shape[-2], factor),
                                                      range(0, base.shape[-1], factor)]
        super().__init__(base, axes)
        self.factor = int(factor)

    def __repr__(self) -> str:
        return f"StridedLabels(factor={self.factor}, shape={self.shape})"


def pyramid(labels: ChunkedLabels, min_side: int = 512) -> List[Union[ChunkedLabels, StridedLabels]]:
    """Levels for a multiscale napari Labels layer: full size, then halved down to ``min_side``."""
    H, W = labels.shape[-2:]
    levels: List[Union[ChunkedLabels, StridedLabels]] = [labels]
    f = 1
    while math.ceil(max(H, W) / f) > min_side and min(H, W) >= 4 * f:
        f *= 2
        levels.append(StridedLabels(labels, f))
    return levels


def is_chunked(data) -> bool:
    """Whether ``data`` (a layer's data or one of its levels) is backed by :class:`ChunkedLabels`."""
    if isinstance(data, (ChunkedLabels, LabelsWindow)):
        return True
    try:
        return isinstance(data[0], ChunkedLabels)
    except Exception:  # noqa: BLE001
        return False


def plane_bbox(labels, plane: Sequence[int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """A copy of a 2-D block of any label array (numpy, zarr, :class:`ChunkedLabels`)."""
    key = tuple(int(p) for p in plane) + (slice(int(y0), int(y1)), slice(int(x0), int(x1)))
    return np.array(labels[key], copy=True)


def write_block(labels, plane: Sequence[int], y0: int, x0: int, block: np.ndarray) -> None:
    """Write a 2-D block into any label array (numpy, zarr, :class:`ChunkedLabels`)."""
    if isinstance(labels, ChunkedLabels):
        labels.write(plane, y0, x0, block)
        return
    h, w = block.shape
    key = tuple(int(p) for p in plane) + (slice(int(y0), int(y0) + h), slice(int(x0), int(x0) + w))
    labels[key] = block


def max_label(labels) -> int:
    """Largest label in an array (cheap for :class:`ChunkedLabels`)."""
    if isinstance(labels, ChunkedLabels):
        return labels.max_label
    arr = np.asarray(labels)
    return int(arr.max()) if arr.size else 0


def planes(shape: Sequence[int]) -> Iterator[Tuple[int, ...]]:
    return itertools.product(*[range(int(s)) for s in shape[:-2]])


def new_labels(shape: Sequence[int], dense_max: int = DENSE_MAX):
    """An empty int32 label volume: numpy for small shapes, :class:`ChunkedLabels` beyond ``dense_max`` pixels."""
    shape = tuple(int(s) for s in shape)
    if math.prod(shape) <= dense_max:
        return np.zeros(shape, np.int32)
    return ChunkedLabels(shape, np.int32)
