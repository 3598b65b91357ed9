"""Prompt-free modes, code paths (random `ovsam-test`): segment everything, find, their JSON, and
`ovsam label` (resume, shards, unreadable images). What the modes *find* is tested with the trained
`ovsam-shapes` in tests/test_shapes_model.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ovsam_core import Predictor
from ovsam_core.automatic import AutoObject, EverythingOptions, find_vocabulary
from ovsam_core.cli import main
from ovsam_core.cli_auto import list_images, parse_shard, read_journal
from ovsam_core.results import auto_result_to_json, rle_to_mask

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO / "examples" / "scene.png"
#: keep every candidate: the random model's masks are neither stable nor confident
LOOSE = dict(points_per_side=6, min_score=0.0, stability_thresh=0.0, min_area_ratio=0.0)


@pytest.fixture(scope="module")
def predictor():
    return Predictor("ovsam-test", device="cpu", progress=False)


def test_everything_objects_are_consistent(predictor):
    res = predictor.segment_everything(SCENE, **LOOSE)
    assert res.image_size == (288, 384) and res.model == "ovsam-test" and len(res) >= 1
    ranks = [o.quality["rank"] for o in res]
    assert ranks == sorted(ranks, reverse=True)
    for o in res:
        assert isinstance(o, AutoObject)
        m = o.mask
        assert m.shape == (288, 384) and m.sum() == o.area > 0
        ys, xs = np.nonzero(m)
        assert o.bbox_xyxy == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert 0 <= o.score <= 1 and o.top_k[0] == (o.label, o.score)
        assert 0 <= o.point[0] < 384 and 0 <= o.point[1] < 288
        assert o.query is None and o.crop_box == (0, 0, 384, 288)
    # no two kept masks overlap beyond the mask-NMS threshold
    masks = [o.mask for o in res]
    for i in range(len(masks)):
        for j in range(i):
            inter = (masks[i] & masks[j]).sum()
            assert inter / (masks[i] | masks[j]).sum() <= 0.6


def test_filters_cut_candidates(predictor):
    emb = predictor.embed(SCENE)
    loose = predictor.segment_everything(emb, **LOOSE)
    none = predictor.segment_everything(emb, **{**LOOSE, "min_score": 1.0})
    assert len(loose) >= 1 and len(none) == 0
    capped = predictor.segment_everything(emb, **{**LOOSE, "max_objects": 1})
    assert len(capped) == 1 and capped.objects[0].rle == loose.objects[0].rle
    assert predictor.encoder_calls == 1  # one embedding served every call


def test_crop_layers_embed_each_crop_once(predictor):
    before = predictor.encoder_calls
    res = predictor.segment_everything(str(SCENE), **{**LOOSE, "crop_n_layers": 1})
    assert predictor.encoder_calls - before <= 1 + 4   # the image (maybe cached) and its 4 crops
    assert all(o.mask.shape == (288, 384) for o in res)
    with pytest.raises(ValueError, match="needs the image itself"):
        predictor.segment_everything(predictor.embed(SCENE), crop_n_layers=1)


@pytest.mark.parametrize("bad, match", [
    (dict(points_per_side=0), "points_per_side"), (dict(min_score=1.5), "min_score"),
    (dict(crop_n_layers=9), "crop_n_layers"), (dict(box_nms_thresh=0), "box_nms_thresh"),
])
def test_bad_options_name_the_value(predictor, bad, match):
    with pytest.raises(ValueError, match=match):
        predictor.segment_everything(SCENE, **bad)


def test_unknown_option_lists_valid_ones(predictor):
    with pytest.raises(TypeError, match="points_per_sid.*valid: .*points_per_side"):
        predictor.segment_everything(SCENE, points_per_sid=4)


def test_find_vocabulary_puts_queries_first_without_duplicates():
    assert find_vocabulary(["Red circle", "star"], ["red circle", "green square", "star,asterisk"]) == [
        "Red circle", "star", "green square"]
    with pytest.raises(ValueError, match="non-empty query"):
        find_vocabulary([" "], ["a"])


def test_find_returns_only_query_matches(predictor):
    res = predictor.find(SCENE, ["person", "dog"], background="coco", **LOOSE)
    assert res.vocabulary == "find:person,dog"
    assert all(o.query in ("person", "dog") and o.label == o.query for o in res)
    # with the queries alone competing, every kept object is a query
    alone = predictor.find(SCENE, "person", background=[], **LOOSE)
    assert len(alone) >= 1 and {o.query for o in alone} == {"person"}


def test_json_schema_matches_prompt_mode(predictor):
    res = predictor.segment_everything(SCENE, **LOOSE)
    doc = auto_result_to_json(res, "scene.png")
    assert doc["format"] == "ovsam-prediction-v1" and doc["auto"]["task"] == "everything"
    o = doc["objects"][0]
    for key in ("label", "score", "top_k", "bbox_xyxy", "mask", "point", "prompt", "quality"):
        assert key in o
    assert o["prompt"]["points"][0][:2] == o["point"]
    np.testing.assert_array_equal(rle_to_mask(o["mask"]), res.objects[0].mask)


def test_cli_everything_and_find(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["predict", str(SCENE), "--model", "ovsam-test", "--everything", "--points-per-side", "6",
                 "--min-score", "0", "--min-stability", "0", "--out", str(out), "--overlay",
                 str(tmp_path / "o.png"), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert doc["auto"]["settings"]["points_per_side"] == 6 and doc["objects"]
    assert (tmp_path / "o.png").stat().st_size > 1000
    assert main(["predict", str(SCENE), "--model", "ovsam-test", "--find", "person", "--background", "coco",
                 "--points-per-side", "4", "--min-score", "0", "--min-stability", "0", "--out", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert doc["auto"]["task"] == "find" and all(o["query"] == "person" for o in doc["objects"])
    # user mistakes: one line, exit 2
    assert main(["predict", str(SCENE), "--model", "ovsam-test", "--everything", "--find", "x", "--out", str(out)]) == 2
    assert main(["predict", str(SCENE), "--model", "ovsam-test", "--everything", "--box", "1,1,9,9",
                 "--out", str(out)]) == 2
    assert main(["predict", str(SCENE), "--model", "ovsam-test", "--everything", "--points-per-side", "0",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("ovsam: error:") == 3 and "Traceback" not in err


# --------------------------------------------------------------------------- ovsam label
def _folder(tmp_path: Path, n: int = 4, bad: bool = True) -> Path:
    from PIL import Image

    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    src = Image.open(SCENE)
    for i in range(n):
        src.rotate(90 * i, expand=True).save(d / ("sub" if i % 2 else ".") / f"img{i}.png")
    if bad:
        (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return d


LABEL = ["--model", "ovsam-test", "--everything", "--points-per-side", "4", "--min-score", "0",
         "--min-stability", "0", "-q"]


def test_label_folder_coco_results(tmp_path, capsys):
    d = _folder(tmp_path)
    out = tmp_path / "res.json"
    assert main(["label", str(d), "--out", str(out), *LABEL]) == 0
    results = json.loads(out.read_text())
    index = json.loads((tmp_path / "res.json.images.json").read_text())
    assert [im["file_name"] for im in index["images"]] == ["img0.png", "img2.png", "sub/img1.png", "sub/img3.png"]
    assert [e["file_name"] for e in index["errors"]] == ["broken.png"]
    assert index["categories"][0]["id"] == 1 and index["categories"][0]["name"] == "person"
    assert index["categories"][0]["synonyms"].startswith("person,child")
    ids = {im["id"] for im in index["images"]}
    assert results and {r["image_id"] for r in results} <= ids
    for r in results:
        m = rle_to_mask(r["segmentation"])
        size = next((im["height"], im["width"]) for im in index["images"] if im["id"] == r["image_id"])
        assert m.shape == size and 1 <= r["category_id"] <= 80
    assert "skipped" in capsys.readouterr().err  # the broken image is reported, not fatal


def test_label_resumes_without_duplicates(tmp_path):
    d = _folder(tmp_path, bad=False)
    ref = tmp_path / "ref.json"
    assert main(["label", str(d), "--out", str(ref), *LABEL]) == 0
    out = tmp_path / "res.json"
    # an interrupted run: two images done, a torn third line (killed mid-write), no .done marker
    parts = tmp_path / "res.json.parts"
    parts.mkdir()
    lines = (tmp_path / "ref.json.parts" / "shard-0-of-1.jsonl").read_text().splitlines()
    (parts / "shard-0-of-1.jsonl").write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][:40])
    assert main(["label", str(d), "--out", str(out), *LABEL]) == 0
    assert json.loads(out.read_text()) == json.loads(ref.read_text())
    assert sorted(read_journal(parts / "shard-0-of-1.jsonl")) == [1, 2, 3, 4]


def test_label_shards_merge_in_order(tmp_path):
    d = _folder(tmp_path, bad=False)
    ref = tmp_path / "ref.json"
    assert main(["label", str(d), "--out", str(ref), *LABEL]) == 0
    out = tmp_path / "res.json"
    assert main(["label", str(d), "--out", str(out), "--shard", "1/2", *LABEL]) == 0
    assert not out.exists()  # shard 0 has not finished
    assert main(["label", str(d), "--out", str(out), "--shard", "0/2", *LABEL]) == 0
    assert json.loads(out.read_text()) == json.loads(ref.read_text())


def test_shard_from_torchrun_env_and_errors():
    assert parse_shard(None, {"RANK": "1", "WORLD_SIZE": "3"}) == (1, 3)
    assert parse_shard(None, {}) == (0, 1)
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "a/b", "1"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_label_user_errors(tmp_path, capsys):
    assert main(["label", str(tmp_path / "nothing*.png"), "--out", str(tmp_path / "r.json"), *LABEL]) == 2
    assert main(["label", str(SCENE), "--out", str(tmp_path / "r.json"), "--model", "ovsam-test"]) == 2
    err = capsys.readouterr().err
    assert "no image matches" in err and "--everything" in err


def test_list_images_dedups_and_sorts(tmp_path):
    d = _folder(tmp_path, n=2, bad=False)
    files = list_images([str(d), str(d / "img0.png"), str(d / "sub" / "*.png")])
    assert [f.name for f in files] == ["img0.png", "img1.png"]
