"""ChunkedLabels: a label volume that is never dense, with NumPy's basic indexing."""
from __future__ import annotations

import numpy as np
import pytest

from ovsam_core.hosts.labelvolume import ChunkedLabels, LabelsWindow, StridedLabels, pyramid


def test_matches_numpy_for_random_writes_and_reads():
    rng = np.random.default_rng(0)
    for _ in range(60):
        lead = tuple(int(v) for v in rng.integers(1, 4, size=rng.integers(0, 2)))
        shape = lead + (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
        lab = ChunkedLabels(shape, chunk=(int(rng.integers(1, 17)), int(rng.integers(1, 17))))
        ref = np.zeros(shape, np.int32)
        for _ in range(4):
            H, W = shape[-2:]
            y0, x0 = int(rng.integers(0, H)), int(rng.integers(0, W))
            h, w = int(rng.integers(1, H - y0 + 1)), int(rng.integers(1, W - x0 + 1))
            blk = ((rng.random((h, w)) < 0.3) * rng.integers(1, 9)).astype(np.int32)
            plane = tuple(int(rng.integers(0, s)) for s in lead)
            lab.write(plane, y0, x0, blk)
            ref[plane + (slice(y0, y0 + h), slice(x0, x0 + w))] = blk
        assert np.array_equal(np.asarray(lab), ref)
        for _ in range(8):
            key = tuple(slice(int(rng.integers(0, s)), int(rng.integers(0, s + 2)), int(rng.integers(1, 4)))
                        if rng.random() < 0.8 else int(rng.integers(0, s)) for s in shape)
            got = lab[key]
            if isinstance(got, LabelsWindow):
                assert got.shape == ref[key].shape
                assert np.array_equal(np.asarray(got), ref[key])
                sub = tuple(slice(None, None, 2) for _ in range(got.ndim))
                assert np.array_equal(np.asarray(got[sub]), ref[key][sub])
            else:
                assert got == ref[key]
        lab[..., :2, :2] = 7
        ref[..., :2, :2] = 7
        assert np.array_equal(np.asarray(lab), ref)


def test_chunks_exist_only_where_written_and_go_away_when_cleared():
    lab = ChunkedLabels((20000, 20000), chunk=(512, 512))
    assert lab.allocated_bytes == 0 and lab.size == 4 * 10 ** 8
    lab.write((), 10000, 10000, np.zeros((600, 600), np.int32))   # zeros allocate nothing
    assert lab.n_chunks == 0
    blk = np.zeros((600, 600), np.int32)
    blk[100:500, 100:500] = 3
    lab.write((), 10000, 10000, blk)
    assert 1 <= lab.n_chunks <= 4 and lab.allocated_bytes <= 4 * 512 * 512 * 4
    assert lab[10200, 10200] == 3 and lab[0, 0] == 0 and lab.max_label == 3
    lab.write((), 10000, 10000, np.zeros((600, 600), np.int32))
    assert lab.n_chunks == 0


def test_slicing_is_lazy_and_pyramid_levels_shrink():
    lab = ChunkedLabels((50, 20000, 20000))
    win = lab[:, 100:900, 100:900]                     # 50 planes: not read yet
    assert isinstance(win, LabelsWindow) and win.shape == (50, 800, 800)
    assert np.asarray(win[3]).shape == (800, 800)
    levels = pyramid(ChunkedLabels((20000, 12000)))
    shapes = [lv.shape for lv in levels]
    assert shapes[0] == (20000, 12000) and all(isinstance(lv, StridedLabels) for lv in levels[1:])
    assert all(a[0] > b[0] for a, b in zip(shapes, shapes[1:])) and max(shapes[-1]) <= 1024
    lab2 = levels[0]
    lab2.write((), 4000, 4000, np.full((8, 8), 5, np.int32))
    assert np.asarray(levels[1][2000:2004, 2000:2004]).tolist() == [[5] * 4] * 4


def test_bad_indices_raise():
    lab = ChunkedLabels((10, 10))
    with pytest.raises(IndexError):
        lab[10, 0]
    with pytest.raises(IndexError):
        lab[::-1]
    with pytest.raises(IndexError):
        lab[0, 0, 0]
    with pytest.raises(ValueError):
        ChunkedLabels((10, 10), dtype=np.float32)


def test_uniform_chunks_are_stored_as_one_value():
    lab = ChunkedLabels((4096, 4096), chunk=(512, 512))
    lab.write((), 0, 0, np.full((2000, 2000), 9, np.int32))   # 9 whole chunks + 7 partial ones
    assert lab.n_chunks == 16 and lab.allocated_bytes == 7 * 512 * 512 * 4
    assert np.asarray(lab[0:2000, 0:2000]).min() == 9 and lab[2000, 2000] == 0 and lab[1999, 1999] == 9
    lab.write((), 100, 100, np.full((5, 5), 2, np.int32))      # a uniform chunk becomes an array again
    assert lab[102, 102] == 2 and lab[99, 99] == 9 and lab.allocated_bytes == 8 * 512 * 512 * 4
    ref = np.zeros((4096, 4096), np.int32)
    ref[:2000, :2000] = 9
    ref[100:105, 100:105] = 2
    assert np.array_equal(np.asarray(lab), ref)
