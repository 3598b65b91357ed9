"""Sample data for napari (File > Open Sample > ovsam): made up on the fly, nothing downloaded.

* ``cells``: two 16-bit fluorescence channels (nuclei, membranes), 512 x 512.
* ``shapes``: an RGB scene with a few filled shapes, 384 x 512.
* ``large``: a 20,000 x 20,000 16-bit image of cells as a lazy dask pyramid; pixels are computed
  per chunk from a formula when napari draws them, so it costs no memory up front.

Qt-free; numpy only (dask for ``large``, which napari installs).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

LayerData = Tuple[Any, Dict[str, Any], str]

SPACING = 64  # lattice of the synthetic cells (level-0 pixels)


def _hash(i: np.ndarray, j: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic pseudo-random numbers in [0, 1) from integer lattice indices."""
    h = (i.astype(np.uint64) * np.uint64(73856093)) ^ (j.astype(np.uint64) * np.uint64(19349663)) \
        ^ np.uint64(salt * 83492791)
    h = (h ^ (h >> np.uint64(13))) * np.uint64(0x5BD1E995)
    h ^= h >> np.uint64(15)
    return (h & np.uint64(0xFFFFFF)).astype(np.float64) / float(0x1000000)


def cells_at(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """uint16 intensities of the synthetic cell image at level-0 rows ``ys`` and columns ``xs``.

    Cells sit on a jittered lattice; some lattice sites are empty. Computed in strips of rows so
    that a chunk costs little more memory than its output.
    """
    ys = np.asarray(ys, dtype=np.int64)
    xs = np.asarray(xs, dtype=np.int64)
    out = np.empty((len(ys), len(xs)), np.uint16)
    uj, inv_j = np.unique(xs // SPACING, return_inverse=True)
    gj = uj[None, :]
    for r in range(0, len(ys), 128):
        yr = ys[r:r + 128]
        ui, inv_i = np.unique(yr // SPACING, return_inverse=True)
        gi = ui[:, None]
        # per-cell parameters on the (small) lattice, then spread to pixels
        cy = (gi * SPACING + SPACING // 2 + (_hash(gi, gj, 1) - 0.5) * 16).astype(np.float32)[inv_i][:, inv_j]
        cx = (gj * SPACING + SPACING // 2 + (_hash(gi, gj, 2) - 0.5) * 16).astype(np.float32)[inv_i][:, inv_j]
        r2 = ((12 + 12 * _hash(gi, gj, 3)) ** 2 * (_hash(gi, gj, 4) > 0.16)).astype(np.float32)[inv_i][:, inv_j]
        bright = (1500 + 2500 * _hash(gi, gj, 5)).astype(np.float32)[inv_i][:, inv_j]
        d2 = (yr[:, None].astype(np.float32) - cy) ** 2 + (xs[None, :].astype(np.float32) - cx) ** 2
        val = np.where(d2 < r2, bright * (1 - 0.3 * d2 / np.maximum(r2, 1)), 0)
        val += 200 + ((yr[:, None] * 7919 + xs[None, :] * 104729) % 61)
        out[r:r + 128] = val
    return out


def lazy_cells(shape: Tuple[int, int] = (20000, 20000), chunk: int = 1024, factor: int = 1):
    """A dask array of :func:`cells_at` sampled every ``factor`` level-0 pixels (lazy)."""
    import dask.array as da

    h, w = -(-shape[0] // factor), -(-shape[1] // factor)

    def block(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        return cells_at(np.arange(r0, r1) * factor, np.arange(c0, c1) * factor)

    return da.map_blocks(block, dtype=np.uint16, chunks=da.core.normalize_chunks((chunk, chunk), (h, w)))


def lazy_pyramid(shape: Tuple[int, int] = (20000, 20000), chunk: int = 1024, min_side: int = 512) -> List[Any]:
    """Levels (full size first, halved down to ``min_side``) of the lazy cell image."""
    levels, f = [lazy_cells(shape, chunk, 1)], 1
    while max(shape) / f > min_side:
        f *= 2
        levels.append(lazy_cells(shape, chunk, f))
    return levels


def cells() -> List[LayerData]:
    """Two-channel 16-bit fluorescence (nuclei and membranes), 512 x 512."""
    rng = np.random.default_rng(7)
    img = cells_at(np.arange(512) + 40, np.arange(512) + 40).astype(np.float64)
    nuclei = np.clip(img * 0.8 + rng.normal(0, 40, img.shape), 0, 65535).astype(np.uint16)
    grad = np.hypot(*np.gradient(img))
    membranes = np.clip(300 + grad * 8 + rng.normal(0, 40, img.shape), 0, 65535).astype(np.uint16)
    return [
        (nuclei, {"name": "nuclei", "colormap": "magenta", "blending": "additive",
                  "contrast_limits": (150, 3500)}, "image"),
        (membranes, {"name": "membranes", "colormap": "green", "blending": "additive",
                     "contrast_limits": (200, 6000)}, "image"),
    ]


def shapes() -> List[LayerData]:
    """An RGB scene: sky, a red square, a green disc and a blue triangle, 384 x 512."""
    h, w = 384, 512
    yy, xx = np.mgrid[:h, :w]
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[...] = (np.array([200, 220, 240]) * (1 - yy[..., None] / (2 * h))).astype(np.uint8)
    rgb[80:200, 60:180] = (220, 40, 40)
    rgb[(yy - 250) ** 2 + (xx - 300) ** 2 < 70 ** 2] = (40, 180, 60)
    tri = (yy > 100) & (yy < 300) & (np.abs(xx - 430) < (yy - 100) * 0.35)
    rgb[tri] = (40, 70, 220)
    return [(rgb, {"name": "shapes", "rgb": True}, "image")]


def large() -> List[LayerData]:
    """20,000 x 20,000 16-bit cells as a lazy multiscale dask pyramid (nothing computed up front)."""
    return [(lazy_pyramid(), {"name": "large cells", "multiscale": True, "contrast_limits": (0, 4500),
                              "colormap": "gray"}, "image")]
