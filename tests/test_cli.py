"""The `ovsam` command line: end-to-end runs and every user mistake (one line, exit 2)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovsam_core.results import rle_to_mask

REPO = Path(__file__).resolve().parents[1]


def ovsam(*args):
    """Run the CLI in-process (fast); returns an object like CompletedProcess."""
    import contextlib
    import io
    import types

    from ovsam_core import cli

    out, err = io.StringIO(), io.StringIO()
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main([str(a) for a in args])
            except SystemExit as e:  # argparse usage errors
                code = e.code
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE")
        else:
            os.environ["HF_HUB_OFFLINE"] = old
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def test_console_script_runs_in_a_fresh_process(tmp_path):
    """The installed entry point (a real process) exits 2 with one line on a user mistake."""
    r = subprocess.run([sys.executable, "-m", "ovsam_core.cli", "predict", tmp_path / "nope.png",
                        "--model", "ovsam-test", "--box", "1,1,5,5", "--out", tmp_path / "x.json"],
                       capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert r.returncode == 2 and r.stderr.startswith("ovsam: error: cannot read image")
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.RandomState(1)
    img = (rng.rand(120, 200, 3) * 255).astype(np.uint8)
    img[30:90, 40:120] = (20, 200, 40)
    Image.fromarray(img).save(d / "img.png")
    (d / "empty.jpg").write_bytes(b"")
    (d / "junk.png").write_bytes(b"not an image at all")
    (d / "vocab.txt").write_text("cat\ndog, puppy\ncar\n")
    os.environ["OVSAM_CACHE_DIR"] = str(d / "cache")
    return d


def test_predict_end_to_end_with_overlay(workdir):
    r = ovsam("predict", workdir / "img.png", "--model", "ovsam-test", "--box", "40,30,120,90",
              "--point", "60,50", "--points", "10,10 150,100,0", "--vocab", workdir / "vocab.txt",
              "--top-k", "2", "--out", workdir / "r.json", "--overlay", workdir / "o.png")
    assert r.returncode == 0, r.stderr
    doc = json.loads((workdir / "r.json").read_text())
    assert doc["format"] == "ovsam-prediction-v1" and doc["model"] == "ovsam-test"
    assert doc["image"] == {"path": str(workdir / "img.png"), "width": 200, "height": 120}
    objs = doc["objects"]
    assert [list(o["prompt"]) for o in objs] == [["box"], ["points"], ["points"]]
    assert objs[2]["prompt"]["points"] == [[10.0, 10.0, 1], [150.0, 100.0, 0]]
    for o in objs:
        assert o["label"] in ("cat", "dog", "car") and len(o["top_k"]) == 2
        m = rle_to_mask(o["mask"])
        assert m.shape == (120, 200) and int(m.sum()) == o["area"]
    over = Image.open(workdir / "o.png")
    assert over.size == (200, 120)
    assert np.abs(np.asarray(over, np.int16) - np.asarray(Image.open(workdir / "img.png"), np.int16)).max() > 50


def test_predict_json_prompt_and_fused_mode(workdir):
    r = ovsam("predict", workdir / "img.png", "--model", "ovsam-test", "--mode", "fused", "--vocab", "coco",
              "--prompt", '{"box": [40, 30, 120, 90], "points": [[60, 50, 1]]}', "--out", workdir / "f.json", "-q")
    assert r.returncode == 0, r.stderr
    doc = json.loads((workdir / "f.json").read_text())
    assert doc["mode"] == "fused" and doc["objects"][0]["prompt"] == {"points": [[60.0, 50.0, 1]],
                                                                       "box": [40.0, 30.0, 120.0, 90.0]}


@pytest.mark.parametrize("args,message", [
    (["--box", "1,2,3"], "bad --box '1,2,3': expected x0,y0,x1,y1"),
    (["--box", "a,b,c,d"], "bad --box"),
    (["--box", "50,50,10,10"], "is empty: need x0 < x1 and y0 < y1"),
    (["--box", "500,500,600,600"], "outside the 200x120 image"),
    (["--point", "900,10"], "outside the 200x120 image"),
    (["--point", "1"], "bad --point"),
    (["--prompt", "{nope"], "bad --prompt"),
    ([], "no prompt given"),
    (["--box", "1,1,50,50", "--vocab", "nosuchvocab.txt"], "neither a preset"),
    (["--box", "1,1,50,50", "--mode", "both"], "invalid choice"),
    (["--box", "1,1,50,50", "--top-k", "0"], "top_k must be >= 1"),
    (["--box", "1,1,50,50", "--device", "tpu"], "unknown device 'tpu'"),
    (["--box", "1,1,50,50", "--device", "cuda"], "no CUDA GPU"),
    (["--box", "1,1,50,50", "--channels", "x"], "bad --channels"),
])
def test_predict_user_mistakes(workdir, args, message):
    r = ovsam("predict", workdir / "img.png", "--model", "ovsam-test", *args, "--out", workdir / "x.json")
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("ovsam: error") or "error:" in ln]
    assert len(lines) == 1


@pytest.mark.parametrize("image,message", [
    ("missing.png", "no such file"),
    ("empty.jpg", "file is empty"),
    ("junk.png", "not a recognised image format"),
    (".", "it is a directory"),
])
def test_predict_bad_images(workdir, image, message):
    r = ovsam("predict", workdir / image, "--model", "ovsam-test", "--box", "1,1,5,5", "--out", workdir / "x.json")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unknown_model_and_missing_weights_offline(workdir):
    r = ovsam("predict", workdir / "img.png", "--model", "nope", "--box", "1,1,5,5", "--out", workdir / "x.json")
    assert r.returncode == 2 and "unknown model 'nope'" in r.stderr and "ovsam-lvis" in r.stderr
    r = ovsam("predict", workdir / "img.png", "--box", "1,1,5,5", "--out", workdir / "x.json")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "sam_vit_h_4b8939.pth" in r.stderr and "--weights-dir" in r.stderr


def test_embed_then_reuse(workdir):
    r = ovsam("embed", workdir / "img.png", "--model", "ovsam-test", "--out", workdir / "emb", "-q")
    assert r.returncode == 0, r.stderr
    files = list((workdir / "emb").glob("*.safetensors"))
    assert len(files) == 1
    from ovsam_core.embedding import ImageEmbedding
    emb = ImageEmbedding.load(files[0])
    assert emb.image_size == (120, 200) and emb.signature.model == "ovsam-test"
    pytest.importorskip("zarr")
    r = ovsam("embed", workdir / "img.png", "--model", "ovsam-test", "--format", "zarr", "--out", workdir / "embz", "-q")
    assert r.returncode == 0, r.stderr
    (z,) = list((workdir / "embz").glob("*.zarr"))
    assert ImageEmbedding.load(z).signature == emb.signature


def test_vocab_build_and_use(workdir):
    r = ovsam("vocab", "build", workdir / "vocab.txt", "--model", "ovsam-test", "--out", workdir / "vb")
    assert r.returncode == 0, r.stderr
    assert (workdir / "vb" / "classifier.safetensors").is_file()
    r = ovsam("predict", workdir / "img.png", "--model", "ovsam-test", "--box", "40,30,120,90",
              "--vocab", workdir / "vb", "--out", workdir / "v.json", "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads((workdir / "v.json").read_text())["objects"][0]["label"] in ("cat", "dog", "car")


@pytest.mark.parity
def test_predict_with_parity_weights(workdir, parity_weights_dir):
    """The real-size model through --weights-dir (official file names), JSON + overlay. fp32: the
    default ``auto`` path at real size (OpenVINO, converted once per cache) is tested by
    tests/test_memory.py; converting it again here would cost minutes."""
    src = Path(__file__).resolve().parents[2] / "shared" / "parity" / "inputs" / "img_640x480.png"
    r = ovsam("predict", src, "--weights-dir", parity_weights_dir, "--dtype", "fp32", "--box", "90,70,270,250",
              "--point", "450,300", "--out", workdir / "p.json", "--overlay", workdir / "p.png")
    assert r.returncode == 0, r.stderr
    doc = json.loads((workdir / "p.json").read_text())
    assert doc["model"] == "ovsam-lvis" and len(doc["objects"]) == 2
    assert doc["objects"][0]["mask"]["size"] == [480, 640]
    assert Image.open(workdir / "p.png").size == (640, 480)
