"""Label bookkeeping in the core (``ovsam_core.hosts.labelbook``, ``planeprompts``, ``planesource``,
``labelexport``): masks painted as one undo step, skipping what is labelled already, strided
masks upsampled tile by tile, the features table, COCO round trip. No model, no host."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ovsam_core import (ChunkedLabels, ImageChannel, ImageSource, LabelBook, ObjectRecord, Preview, PromptSet, Region,
                        features_table, new_labels, read_coco, to_coco)


def _preview(mask: np.ndarray, y0: int, x0: int, label: str = "disc", step: int = 1, plane=(), point=(0.0, 0.0)):
    region = Region(tuple(plane), 0, 10_000, 0, 10_000, step=step)
    return Preview(PromptSet(tuple(plane), ((point[0], point[1], 1),)), region, mask, y0, x0, label, 0.9,
                   ((label, 0.9), ("other", 0.1)), source="everything")


def _record(pv: Preview, lid: int, area: int, box) -> ObjectRecord:
    return ObjectRecord(lid, pv.label, pv.score, pv.label, pv.score, pv.source, pv.top_k, area, box, pv.plane,
                        pv.prompts.to_json())


def _square(n: int) -> np.ndarray:
    return np.ones((n, n), bool)


@pytest.mark.parametrize("chunked", [False, True])
def test_one_commit_of_many_objects_is_one_undo_step(chunked):
    labels = ChunkedLabels((2, 64, 80), chunk=(16, 16)) if chunked else np.zeros((2, 64, 80), np.int32)
    labels[0, 0:4, 0:4] = 5          # labelled before: kept, and the next id follows it
    book = LabelBook(labels)
    before = np.array(np.asarray(labels), copy=True)
    assert book.next_id == 6
    first = book.commit([_preview(_square(10), 20, 20, plane=(1,))], _record)
    assert [r.label_id for r in first] == [6]
    previews = [_preview(_square(8), 2, 2, "a", plane=(0,)),          # half on the old object: filled around it
                _preview(_square(12), 30, 50, "b", plane=(0,)),
                _preview(_square(10), 21, 21, "c", plane=(1,)),        # 81 % under object 6: skipped
                _preview(_square(6), 40, 60, "d", plane=(1,))]
    recs = book.commit(previews, _record, skip_covered=0.5)
    assert [(r.label_id, r.class_name) for r in recs] == [(7, "a"), (8, "b"), (9, "d")]
    arr = np.asarray(labels)
    assert arr[0, 0, 0] == 5 and arr[0, 5, 5] == 7 and recs[0].area == 64 - 4
    assert recs[1].bbox_xyxy == (50, 30, 62, 42) and recs[1].plane == (0,)
    assert set(book.objects) == {6, 7, 8, 9}
    assert [r.label_id for r in book.undo()] == [7, 8, 9]                # ONE undo takes the run back
    after_first = np.array(np.asarray(labels), copy=True)
    assert set(book.objects) == {6} and book.next_id == 7
    assert np.array_equal(after_first[0], before[0]) and (after_first[1] == 6).sum() == 100
    assert [r.label_id for r in book.undo()] == [6] and book.undo() == []
    assert np.array_equal(np.asarray(labels), before) and not book.can_undo


def test_paint_over_and_rename():
    book = LabelBook(np.zeros((30, 30), np.int32))
    book.commit([_preview(_square(10), 0, 0)], _record)
    rec = book.commit([_preview(_square(10), 5, 5, "b")], _record, paint_over=True)[0]
    assert rec.area == 100 and int((book.labels == 1).sum()) == 75
    assert book.rename(2, "other").choice == "top-k" and book.rename(2, "mine").choice == "typed"
    assert math.isnan(book.objects[2].score) and book.rename(2, "b").choice == "suggested"
    with pytest.raises(ValueError, match="empty"):
        book.rename(2, "  ")
    book.undo()
    assert int((book.labels == 1).sum()) == 100 and set(book.objects) == {1}


def test_strided_mask_is_upsampled_tile_by_tile():
    mask = np.zeros((3, 4), bool)
    mask[1, 1:3] = True
    pv = _preview(mask, 100, 200, step=4)
    assert pv.area == 8 * 4 and pv.bbox_xyxy == (200, 100, 216, 112)
    tile = pv.mask_tile(100, 112, 200, 216)
    assert tile[4:8, 4:12].all() and tile.sum() == 32
    book = LabelBook(new_labels((300, 300)))
    rec = book.commit([pv], _record)[0]
    assert rec.area == 32 and rec.bbox_xyxy == (204, 104, 212, 108)


def test_features_table_has_class_score_and_point():
    book = LabelBook(np.zeros((40, 40), np.int32))
    book.commit([_preview(_square(5), 10, 10, "x", point=(12.0, 13.0))], _record)
    f = book.features()
    assert f["index"].tolist() == [1] and f["class_name"].tolist() == ["x"] and f["choice"].tolist() == ["everything"]
    assert (f["point_x"][0], f["point_y"][0]) == (13.5, 12.5)       # (row, col) data -> (x, y) pixel edges
    assert features_table([])["index"].tolist() == []


def test_coco_round_trip_of_a_stack():
    book = LabelBook(np.zeros((2, 50, 60), np.int32))
    book.commit([_preview(_square(7), 3, 4, "a", plane=(1,)), _preview(_square(5), 30, 40, "b", plane=(0,))], _record)
    src = ImageSource([ImageChannel([np.zeros((2, 50, 60), np.uint16)], name="stack")])
    doc = to_coco(book.labels, book.objects, src)
    assert {c["name"] for c in doc["categories"]} == {"a", "b"} and len(doc["images"]) == 2
    ann = {a["ovsam_label"]: a for a in doc["annotations"]}
    assert ann[1]["bbox"] == [4, 3, 7, 7] and ann[1]["area"] == 49


def test_contrast_limits_map_to_8_bits():
    img = np.array([[0, 1000], [2000, 4000]], np.uint16)
    rgb = ImageSource.from_array(img, contrast_limits=(1000, 3000)).read_rgb(Region((), 0, 2, 0, 2))
    assert rgb.shape == (2, 2, 3) and rgb[..., 0].tolist() == [[0, 0], [128, 255]]


def test_read_coco_gives_full_size_masks(tmp_path):
    import json

    book = LabelBook(np.zeros((20, 30), np.int32))
    book.commit([_preview(_square(4), 2, 3, "a")], _record)
    p = tmp_path / "c.json"
    p.write_text(json.dumps(to_coco(book.labels, book.objects, ImageSource.from_array(np.zeros((20, 30))))))
    (obj,) = read_coco(p)
    assert obj["class_name"] == "a" and obj["mask"].shape == (20, 30) and obj["mask"].sum() == 16
