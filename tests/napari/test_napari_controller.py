"""The Qt-free controller: prompts, intensities, regions of interest, commits, undo, embeddings, export."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from ovsam_core import EmbeddingMismatchError, Prompt, load_image
from ovsam_core import Annotator as Controller, ChunkedLabels, ImageChannel as Channel, ImageSource, PromptSet, Region
from ovsam_core import new_labels, read_coco
from ovsam_core.hosts.labelexport import read_csv
from ovsam_plugins.napari.layers import prompts_from_layers

VOCAB = ["cell", "nucleus", "square", "disc", "triangle", "sky"]  # as in conftest.py


def _ctl(settings, predictor, image, **kw):
    ctl = Controller(settings, predictor=predictor)
    src = image if isinstance(image, ImageSource) else ImageSource.from_array(image, **kw)
    ctl.set_image(src)
    return ctl


def _nonempty(ctl, candidates):
    """The first prompt (of a few) whose mask is not empty (the test model has random weights)."""
    for ps in candidates:
        pv = ctl.predict(ps)
        if pv.area:
            return pv
    pytest.fail("no candidate prompt gave a non-empty mask")


# ------------------------------------------------------------------ prompts


def test_prompt_coordinates_follow_the_pixel_centre_convention():
    ps = PromptSet((), ((10.0, 20.0, 1), (30.0, 40.0, 0)), (5.0, 6.0, 50.0, 60.0))
    assert ps.extent() == (5.5, 6.5, 50.5, 60.5)
    p = ps.to_prompt(Region((), 0, 100, 0, 100))
    assert p.points == ((20.5, 10.5), (40.5, 30.5)) and p.labels == (1, 0) and p.box == (6.5, 5.5, 60.5, 50.5)
    q = ps.to_prompt(Region((), 4, 104, 6, 106, step=2))
    assert q.points[0] == ((20.5 - 6) / 2, (10.5 - 4) / 2) and q.box == ((6.5 - 6) / 2, (5.5 - 4) / 2, 27.25, 23.25)
    assert ps.to_json() == {"points": [[20.5, 10.5, 1], [40.5, 30.5, 0]], "box": [6.5, 5.5, 60.5, 50.5]}


def test_prompts_from_layers_filters_the_plane_and_reads_labels():
    pts = SimpleNamespace(data=np.array([[2, 10, 20], [2, 11, 21], [3, 50, 50]], float),
                          features={"label": ["positive", "negative", "positive"]})
    boxes = SimpleNamespace(data=[np.array([[2, 5, 5], [2, 5, 40], [2, 30, 40], [2, 30, 5]], float),
                                  np.array([[3, 1, 1], [3, 1, 9], [3, 9, 9], [3, 9, 1]], float),
                                  np.array([[2, 0, 0], [2, 0, 3], [2, 3, 3]], float)],
                            shape_type=["rectangle", "rectangle", "polygon"])
    ps = prompts_from_layers(pts, boxes, (2,))
    assert ps.points == ((10.0, 20.0, 1), (11.0, 21.0, 0)) and ps.box == (5.0, 5.0, 30.0, 40.0)
    ps3 = prompts_from_layers(pts, boxes, (3,))
    assert ps3.points == ((50.0, 50.0, 1),) and ps3.box == (1.0, 1.0, 9.0, 9.0)
    assert prompts_from_layers(pts, boxes, (7,)).is_empty()


# ------------------------------------------------------------------ intensities


def test_contrast_limits_map_to_the_model_input(blobs_u16):
    src = ImageSource.from_array(blobs_u16, contrast_limits=(500, 9000))
    rgb = src.read_rgb(Region((), 0, 300, 0, 400))
    exp = np.rint(np.clip((blobs_u16.astype(np.float64) - 500) / 8500 * 255, 0, 255)).astype(np.uint8)
    assert rgb.shape == (300, 400, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 0], exp) and np.array_equal(rgb[..., 2], exp)
    # narrower limits saturate; float with NaN; RGB uint8 passes through
    assert src.channels[0].contrast_limits == (500, 9000)
    narrow = ImageSource.from_array(blobs_u16, contrast_limits=(500, 5000)).read_rgb(Region((), 0, 300, 0, 400))
    assert narrow[120, 140, 0] == 255 and narrow[0, 0, 0] == 0
    f = blobs_u16.astype(np.float32) / 9000
    f[0, 0] = np.nan
    fr = ImageSource.from_array(f, contrast_limits=(0.0, 1.0)).read_rgb(Region((), 0, 300, 0, 400))
    assert fr[0, 0, 0] == 0 and fr[120, 140, 0] == 255
    col = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert np.array_equal(ImageSource.from_array(col, (0, 255), rgb=True).read_rgb(Region((), 0, 20, 0, 30)), col)


def test_two_or_three_grey_layers_become_rgb_and_auto_matches_ovsam_embed(blobs_u16):
    a, b = blobs_u16, (blobs_u16 // 2).astype(np.uint16)
    two = ImageSource([Channel([a], (0, 9000)), Channel([b], (0, 4500))])
    rgb = two.read_rgb(Region((), 0, 300, 0, 400))
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and not rgb[..., 2].any()
    three = ImageSource([Channel([a], (0, 9000)), Channel([b], (0, 9000)), Channel([a], (0, 18000))])
    assert three.read_rgb(Region((), 0, 300, 0, 400))[120, 140].tolist() == [255, 128, 128]
    whole = Region((), 0, 300, 0, 400)
    assert np.array_equal(ImageSource.from_array(a, (0, 1)).read_rgb(whole, "auto"), load_image(a).rgb)
    with pytest.raises(ValueError, match="different shapes"):
        ImageSource([Channel([a]), Channel([a[:10]])])
    with pytest.raises(ValueError, match="RGB layer"):
        ImageSource([Channel([np.zeros((5, 5, 3), np.uint8)], rgb=True), Channel([np.zeros((5, 5))])])


# ------------------------------------------------------------------ predictions


def test_whole_plane_prediction_equals_the_core_predictor(settings, predictor, blobs_u16):
    ctl = _ctl(settings, predictor, blobs_u16, contrast_limits=(500, 9000))
    assert ctl.region_mode() == "whole"
    pv = ctl.predict(PromptSet((), ((120.0, 140.0, 1),)))
    rgb = ImageSource.from_array(blobs_u16, (500, 9000)).read_rgb(Region((), 0, 300, 0, 400))
    ref = predictor.predict(rgb, Prompt.from_points([(140.5, 120.5)]), VOCAB, top_k=3).objects[0]
    full = np.zeros((300, 400), bool)
    h, w = pv.mask.shape
    full[pv.y0:pv.y0 + h, pv.x0:pv.x0 + w] = pv.mask
    assert np.array_equal(full, ref.mask)
    assert (pv.label, pv.top_k) == (ref.label, ref.top_k) and pv.label in VOCAB
    assert pv.bbox_xyxy == ref.bbox_xyxy and pv.area == ref.area


def test_roi_mode_answers_around_the_prompt_in_global_coordinates(settings, predictor):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 200, (3000, 4000), dtype=np.uint8)
    img[2000:2150, 3000:3200] = 255
    settings.roi_size = 512
    ctl = _ctl(settings, predictor, img, contrast_limits=(0, 255))
    assert ctl.region_mode() == "roi"
    ps = PromptSet((), ((2075.0, 3100.0, 1),))
    r = ctl.region_for(ps)
    assert (r.height, r.width, r.step) == (512, 512, 1) and r.contains(2075, 3100, 2076, 3101, margin=200)
    calls = predictor.encoder_calls
    pv = ctl.predict(ps)
    assert predictor.encoder_calls == calls + 1
    # the same as predicting on the crop by hand, shifted back to the plane
    crop = img[r.y0:r.y1, r.x0:r.x1]
    ref = predictor.predict(np.repeat(crop[..., None], 3, -1), Prompt.from_points([(3100.5 - r.x0, 2075.5 - r.y0)]),
                            VOCAB, top_k=3).objects[0]
    full = np.zeros((r.height, r.width), bool)
    h, w = pv.mask.shape
    full[pv.y0 - r.y0:pv.y0 - r.y0 + h, pv.x0 - r.x0:pv.x0 - r.x0 + w] = pv.mask
    assert np.array_equal(full, ref.mask) and pv.label == ref.label
    # a second click inside the region reuses its embedding; one far away does not
    ctl.predict(PromptSet((), ((2080.0, 3050.0, 1), (2060.0, 3150.0, 0))))
    assert predictor.encoder_calls == calls + 1
    far = ctl.region_for(PromptSet((), ((10.0, 10.0, 1),)))
    assert (far.y0, far.x0) == (0, 0) and far != r
    corner = ctl.region_for(PromptSet((), ((2999.0, 3999.0, 1),)))
    assert (corner.y1, corner.x1) == (3000, 4000) and corner.height == 512


def test_big_box_is_read_with_a_stride_from_a_pyramid_level(settings, predictor):
    pytest.importorskip("dask")
    from ovsam_plugins.napari.sample_data import lazy_pyramid

    src = ImageSource.from_array(lazy_pyramid((8000, 8000), chunk=512), contrast_limits=(0, 4500))
    assert src.is_multiscale and src.level_factors()[:3] == [1, 2, 4]
    settings.max_read = 1024
    ctl = _ctl(settings, predictor, src)
    ps = PromptSet((), (), (1000.0, 1000.0, 4999.0, 4999.0))
    r = ctl.region_for(ps)
    # 6000 px wanted / 1024 px read -> stride 6 -> the level downsampled 4x (never coarser than wanted)
    assert (r.step, r.level, r.level_stride) == (4, 2, 1)
    assert r.contains(*[v + 0.5 for v in ps.box], margin=500)
    assert 1024 < -(-max(r.height, r.width) // r.step) <= 2 * 1024
    pv = ctl.predict(ps)
    assert pv.region == r and (pv.y0 - r.y0) % 1 == 0
    if pv.area:
        x0, y0, x1, y1 = pv.bbox_xyxy
        assert r.x0 <= x0 < x1 <= r.x1 and r.y0 <= y0 < y1 <= r.y1


# ------------------------------------------------------------------ commits


def test_commit_undo_rename_and_features(settings, predictor, blobs_u16):
    ctl = _ctl(settings, predictor, blobs_u16, contrast_limits=(500, 9000))
    pv = _nonempty(ctl, [PromptSet((), ((120.0, 140.0, 1),)), PromptSet((), (), (190.0, 240.0, 270.0, 380.0))])
    rec1 = ctl.commit()
    assert rec1.label_id == 1 and rec1.class_name == pv.label and rec1.choice == "suggested"
    assert rec1.score == pytest.approx(pv.score) and int((ctl.labels == 1).sum()) == rec1.area == pv.area
    with pytest.raises(ValueError, match="nothing to commit"):
        ctl.commit()
    # the same object again: without paint-over it cannot take committed pixels
    ctl.predict(pv.prompts)
    with pytest.raises(ValueError, match="paint over"):
        ctl.commit()
    ctl.configure(paint_over=True)
    ctl.predict(pv.prompts)
    alt = pv.top_k[1][0]
    rec2 = ctl.commit(alt)
    assert rec2.label_id == 2 and rec2.choice == "top-k" and rec2.score == pytest.approx(pv.top_k[1][1])
    assert not (ctl.labels == 1).any() and int((ctl.labels == 2).sum()) == pv.area
    feats = ctl.features()
    assert feats["index"].tolist() == [1, 2] and feats["class_name"].tolist() == [pv.label, alt]
    assert json.loads(feats["top_k"][0])[0][0] == pv.label and feats["area"].tolist() == [pv.area, pv.area]
    # undo gives the pixels of object 1 back
    assert [r.label_id for r in ctl.undo()] == [2]
    assert int((ctl.labels == 1).sum()) == pv.area and list(ctl.objects) == [1]
    ctl.predict(pv.prompts)
    rec3 = ctl.commit("  my own class ")
    assert rec3.label_id == 2 and rec3.class_name == "my own class" and rec3.choice == "typed" and np.isnan(rec3.score)
    assert ctl.rename(2, pv.label).choice == "suggested"
    assert [r.label_id for r in ctl.undo()] == [2] and [r.label_id for r in ctl.undo()] == [1] and ctl.undo() == []
    assert not ctl.labels.any() and ctl.features()["index"].tolist() == []


def test_stacks_are_answered_plane_by_plane(settings, predictor, blobs_u16):
    stack = np.stack([np.roll(blobs_u16, 20 * i, axis=1) for i in range(4)])
    ctl = _ctl(settings, predictor, stack, contrast_limits=(500, 9000))
    assert ctl.labels.shape == (4, 300, 400)
    pv = _nonempty(ctl, [PromptSet((2,), ((120.0, 180.0, 1),)), PromptSet((2,), (), (190.0, 280.0, 270.0, 410.0))])
    assert pv.region.plane == (2,)
    ctl.commit()
    assert ctl.labels[2].any() and not ctl.labels[[0, 1, 3]].any()
    with pytest.raises(ValueError, match="plane"):
        ctl.predict(PromptSet((9,), ((1.0, 1.0, 1),)))


def test_new_labels_are_chunked_for_large_shapes():
    assert isinstance(new_labels((100, 100)), np.ndarray)
    big = new_labels((20000, 20000))
    assert isinstance(big, ChunkedLabels) and big.allocated_bytes == 0


# ------------------------------------------------------------------ embeddings on disk


def test_saved_embedding_is_reused_by_another_predictor(settings, predictor, blobs_u16, tmp_path):
    from ovsam_core import Predictor

    ctl = _ctl(settings, predictor, blobs_u16, contrast_limits=(500, 9000))
    path = ctl.save_embedding(tmp_path / "emb.safetensors")
    fresh = Predictor("ovsam-test", device="cpu", progress=False)
    ctl2 = _ctl(settings, fresh, blobs_u16, contrast_limits=(500, 9000))
    ctl2.load_embedding(path)
    a = ctl2.predict(PromptSet((), ((120.0, 140.0, 1),)))
    assert fresh.encoder_calls == 0
    b = ctl.predict(PromptSet((), ((120.0, 140.0, 1),)))
    assert np.array_equal(a.mask, b.mask) and a.label == b.label
    other = _ctl(settings, fresh, blobs_u16[::-1].copy(), contrast_limits=(500, 9000))
    with pytest.raises(EmbeddingMismatchError, match="another image"):
        other.load_embedding(path)
    small = _ctl(settings, fresh, blobs_u16[:100], contrast_limits=(500, 9000))
    with pytest.raises(EmbeddingMismatchError, match="image"):
        small.load_embedding(path)


def test_ovsam_embed_output_is_found_in_the_embeddings_folder(settings, blobs_u16, tmp_path):
    """`ovsam embed` on a GPU machine, the folder copied to a laptop, opened in napari."""
    import tifffile

    from ovsam_core.cli import main

    tif = tmp_path / "blobs.tif"
    tifffile.imwrite(tif, blobs_u16)
    assert main(["embed", str(tif), "--out", str(tmp_path / "embs"), "--model", "ovsam-test",
                 "--device", "cpu", "-q"]) == 0
    settings.embeddings_dir = str(tmp_path / "embs")
    settings.intensity = "auto"
    ctl = Controller(settings)
    ctl.set_image(ImageSource.from_array(tifffile.imread(tif), contrast_limits=(500, 9000)))
    ctl.predict(PromptSet((), ((120.0, 140.0, 1),)))
    assert ctl.predictor.encoder_calls == 0


# ------------------------------------------------------------------ export


def test_export_round_trips(settings, predictor, blobs_u16, tmp_path):
    import tifffile

    stack = np.stack([blobs_u16, np.roll(blobs_u16, 30, axis=0)])
    ctl = _ctl(settings, predictor, stack, contrast_limits=(500, 9000), name="blobs")
    for plane, cands in [((0,), [PromptSet((0,), ((120.0, 140.0, 1),)), PromptSet((0,), (), (190.0, 240.0, 270.0, 380.0))]),
                         ((1,), [PromptSet((1,), (), (220.0, 240.0, 295.0, 380.0)), PromptSet((1,), ((150.0, 140.0, 1),))])]:
        _nonempty(ctl, cands)
        ctl.commit("typed name" if plane == (1,) else None)
    paths = ctl.export(tmp_path / "out")
    assert {p.name for p in paths.values()} == {"blobs_labels.tif", "blobs_classes.csv", "blobs_coco.json"}
    assert np.array_equal(tifffile.imread(paths["labels"]), ctl.labels)
    objs = read_coco(paths["coco"])
    assert len(objs) == 2
    for o in objs:
        rec = ctl.objects[o["label"]]
        assert o["class_name"] == rec.class_name and o["plane"] == rec.plane
        assert np.array_equal(o["mask"], ctl.labels[rec.plane] == rec.label_id)
    doc = json.loads(paths["coco"].read_text())
    assert sorted(c["name"] for c in doc["categories"]) == sorted({r.class_name for r in ctl.objects.values()})
    assert [i["ovsam_plane"] for i in doc["images"]] == [[0], [1]]
    rows = read_csv(paths["csv"])
    assert [(int(r["label"]), r["class_name"]) for r in rows] == [(k, v.class_name) for k, v in ctl.objects.items()]
    assert json.loads(rows[0]["top_k"])[0][0] == ctl.objects[1].suggested_class


def test_restarting_on_the_same_labels_keeps_the_objects(settings, predictor, blobs_u16):
    ctl = _ctl(settings, predictor, blobs_u16, contrast_limits=(500, 9000))
    _nonempty(ctl, [PromptSet((), ((120.0, 140.0, 1),)), PromptSet((), (), (190.0, 240.0, 270.0, 380.0))])
    rec = ctl.commit()
    ctl.set_image(ImageSource.from_array(blobs_u16, contrast_limits=(0, 20000)), ctl.labels)
    assert list(ctl.objects) == [rec.label_id] and ctl.can_undo
    ctl.set_image(ImageSource.from_array(blobs_u16, contrast_limits=(0, 20000)))
    assert not ctl.objects and not ctl.can_undo and not ctl.labels.any()


class _SpyArray:
    """An array-like that records every read (to prove only regions are read)."""

    def __init__(self, arr):
        self._arr, self.reads = arr, []
        self.shape, self.dtype, self.ndim = arr.shape, arr.dtype, arr.ndim

    def __getitem__(self, key):
        out = self._arr[key]
        self.reads.append(out.size)
        return out


def test_only_the_region_of_interest_is_read(settings, predictor):
    rng = np.random.default_rng(5)
    spy = _SpyArray(rng.integers(0, 4000, (6000, 7000), dtype=np.uint16))
    ctl = _ctl(settings, predictor, ImageSource.from_array(spy, contrast_limits=(0, 4000)))
    ctl.predict(PromptSet((), ((3000.0, 3500.0, 1),)))
    ctl.predict(PromptSet((), (), (100.0, 100.0, 4000.0, 5000.0)))      # big box: strided
    assert spy.reads and max(spy.reads) <= 2048 * 2048 and sum(spy.reads) < spy.shape[0] * spy.shape[1] / 8


def test_zarr_arrays_are_read_by_region(settings, predictor):
    zarr = pytest.importorskip("zarr")
    shape = (5000, 6000)
    if hasattr(zarr, "create_array"):
        z = zarr.create_array(store={}, shape=shape, chunks=(512, 512), dtype="uint16")
    else:  # zarr 2
        z = zarr.zeros(shape, chunks=(512, 512), dtype="uint16")
    z[2000:2100, 3000:3150] = 5000
    ctl = _ctl(settings, predictor, ImageSource.from_array(z, contrast_limits=(0, 5000)))
    pv = ctl.predict(PromptSet((), ((2050.0, 3075.0, 1),)))
    assert ctl.region_mode() == "roi" and pv.region.height == 1024 and pv.label in VOCAB
