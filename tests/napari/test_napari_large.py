"""A 20,000 x 20,000 uint16 dask-backed image: prompting, committing and exporting stay far below
the image's size in memory (800 MB; its int32 labels would be 1.6 GB)."""
from __future__ import annotations

import gc
import threading
import time
import tracemalloc

import numpy as np
import pytest

from ovsam_core import Annotator as Controller, ChunkedLabels, ImageSource, PromptSet, to_coco

da = pytest.importorskip("dask.array")

SIDE = 20_000
IMAGE_BYTES = SIDE * SIDE * 2            # 800 MB
LIMIT = 160 * 1024 ** 2                  # what we allow: a fifth of the image


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakRSS:
    """Peak resident memory above the start, sampled every 2 ms (Linux)."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())

    @property
    def delta(self) -> int:
        return self.peak - self.base


@pytest.mark.parametrize("multiscale", [False, True], ids=["dask", "dask-pyramid"])
def test_prompting_a_20k_image_stays_far_below_its_size(settings, predictor, multiscale):
    import os

    from ovsam_plugins.napari.sample_data import lazy_cells, lazy_pyramid

    if not os.path.exists("/proc/self/statm"):
        pytest.skip("RSS measurement needs Linux /proc")
    data = lazy_pyramid((SIDE, SIDE)) if multiscale else lazy_cells((SIDE, SIDE))
    src = ImageSource.from_array(data, contrast_limits=(0, 4500), name="big")
    assert src.shape == (SIDE, SIDE) and src.is_multiscale == multiscale
    ctl = Controller(settings, predictor=predictor)
    ctl.set_image(src)
    assert isinstance(ctl.labels, ChunkedLabels) and ctl.region_mode() == "roi"
    # a point in a cell (lattice 64 px: centre of site (192, 234) lies near (12320, 15008))
    prompts = [PromptSet((), ((12320.0, 15008.0, 1),)), PromptSet((), (), (12290.0, 14978.0, 12350.0, 15038.0)),
               PromptSet((), (), (3000.0, 3000.0, 4800.0, 5000.0))]   # a big box: strided read (step 2)
    gc.collect()
    tracemalloc.start()
    try:
        with PeakRSS() as rss:
            committed = []
            for ps in prompts:
                pv = ctl.predict(ps)
                x0, y0, x1, y1 = pv.region.x0, pv.region.y0, pv.region.x1, pv.region.y1
                assert x0 <= ps.extent()[1] and ps.extent()[3] <= x1 and y0 <= ps.extent()[0] and ps.extent()[2] <= y1
                if pv.area:
                    committed.append(ctl.commit())
            coco = to_coco(ctl.labels, ctl.objects, ctl.source)
            undone = ctl.undo()
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\n20k x 20k ({'pyramid' if multiscale else 'dask'}): python peak {traced_peak / 2**20:.1f} MiB, "
          f"RSS peak +{rss.delta / 2**20:.1f} MiB, label chunks {ctl.labels.n_chunks} "
          f"({ctl.labels.allocated_bytes / 2**20:.1f} MiB), objects {len(committed)}")
    assert committed, "no prompt gave a mask"
    assert traced_peak < LIMIT, f"numpy/python peak {traced_peak / 2**20:.0f} MiB"
    assert rss.delta < LIMIT, f"RSS grew by {rss.delta / 2**20:.0f} MiB"
    assert traced_peak < IMAGE_BYTES / 5 and rss.delta < IMAGE_BYTES / 5
    # results are in global coordinates and only the touched chunks exist
    rec = committed[0]
    x0, y0, x1, y1 = rec.bbox_xyxy
    assert 10_000 < x0 < x1 <= SIDE and 10_000 < y0 < y1 <= SIDE
    assert ctl.labels.allocated_bytes < 64 * 1024 ** 2
    assert len(coco["annotations"]) == len(committed)
    assert coco["annotations"][0]["bbox"][:2] == [x0, y0] and coco["images"][0]["width"] == SIDE
    assert [r.label_id for r in undone] == [committed[-1].label_id]


def test_coco_of_a_20k_object_is_encoded_without_a_dense_mask(settings, predictor, tmp_path):
    """The object's RLE is built from its box; pycocotools reads area and box straight from it."""
    import json

    from pycocotools import mask as mask_utils

    from ovsam_core import Preview, Region
    from ovsam_core.hosts.labelexport import write_csv

    ctl = Controller(settings, predictor=predictor)
    ctl.set_image(ImageSource.from_array(da.zeros((SIDE, SIDE), dtype=np.uint16, chunks=4096), contrast_limits=(0, 1)))
    blk = np.zeros((40, 50), bool)
    blk[5:30, 10:45] = True
    # a preview near the far corner, as predict() would make it (prediction is covered above)
    ctl.preview = Preview(PromptSet((), ((19990.0, 19970.0, 1),)), Region((), 19000, SIDE, 19000, SIDE),
                          blk, 19960, 19950, "cell", 0.9, (("cell", 0.9), ("nucleus", 0.1)))
    tracemalloc.start()
    try:
        rec = ctl.commit()
        doc = to_coco(ctl.labels, ctl.objects, ctl.source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 ** 2
    assert rec.bbox_xyxy == (19960, 19965, 19995, 19990) and rec.area == 25 * 35
    (ann,) = doc["annotations"]
    rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
    assert int(mask_utils.area(rle)) == rec.area == ann["area"]
    assert mask_utils.toBbox(rle).tolist() == [19960.0, 19965.0, 35.0, 25.0] == [float(v) for v in ann["bbox"]]
    assert doc["categories"] == [{"id": 1, "name": "cell", "supercategory": "object"}]
    (tmp_path / "big_coco.json").write_text(json.dumps(doc))
    assert write_csv(ctl.objects, tmp_path / "big.csv").read_text().count("\n") == 2
