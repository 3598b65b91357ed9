"""Loader, key mapping, strict diff and ``ovsam convert`` on the tiny architecture."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ovsam_core import (CheckpointMismatchError, WeightsNotFoundError, convert_model, load_model,
                        read_checkpoint, register_model, unregister_model)
from ovsam_core.weights.checkpoint import MappedWeights, map_file
from ovsam_core.weights.registry import CLIP_OPENAI, NECK_SPACE, SAM_VIT_H, get_model_spec
from upstream_files import make_test_spec, write_upstream_files


@pytest.fixture
def spec(monkeypatch, tmp_path):
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path / "cache"))
    s = register_model(make_test_spec(), overwrite=True)
    yield s
    unregister_model(s.name)


def _assert_loaded(loaded, ref, half_clip=False):
    for k, v in loaded.model.state_dict().items():
        exp = ref[f"image.{k}"]
        if half_clip and k.startswith("backbone.") and exp.dim() > 1:
            exp = exp.half().float()
        assert torch.equal(v, exp), k
    for k, v in loaded.text_encoder.state_dict().items():
        exp = ref[f"text.{k}"]
        if half_clip and exp.dim() > 1:
            exp = exp.half().float()
        assert torch.equal(v, exp), k
    assert torch.equal(loaded.classifier, ref["classifier"])


def test_load_upstream_layouts(spec, tmp_path):
    ref = write_upstream_files(tmp_path)
    loaded = load_model(spec.name, tmp_path, download=False, progress=False)
    _assert_loaded(loaded, ref)
    assert not loaded.model.training


def test_load_openai_torchscript_clip(spec, tmp_path):
    """OpenAI's RN50x16.pt is a TorchScript archive with fp16 tensors: read, cast to fp32."""
    ref = write_upstream_files(tmp_path, torchscript_clip=True)
    loaded = load_model(spec.name, tmp_path, download=False, progress=False)
    _assert_loaded(loaded, ref, half_clip=True)


def test_visual_rename_and_override():
    """conv1->stem.0, bn1->stem.1, attnpool->head; the v3det file's roi_conv wins (Q5)."""
    m = MappedWeights()
    sd = {"visual.conv1.weight": torch.ones(1), "visual.bn3.running_mean": torch.ones(1),
          "visual.attnpool.c_proj.bias": torch.ones(1), "visual.layer1.0.conv1.weight": torch.ones(1),
          "ln_final.weight": torch.ones(1), "logit_scale": torch.ones(())}
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "clip.pth"
        torch.save(sd, p)
        map_file(CLIP_OPENAI, p, m)
    assert set(m.tensors["image"]) == {"backbone.stem.0.weight", "backbone.stem.7.running_mean",
                                       "backbone.head.c_proj.bias", "backbone.layer1.0.conv1.weight"}
    assert set(m.tensors["text"]) == {"ln_final.weight"}
    assert m.unexpected == []


def test_state_dict_wrappers_and_module_prefix(tmp_path):
    t = torch.arange(3.0)
    torch.save({"state_dict": {"module.a.b": t}}, tmp_path / "x.pth")
    torch.save({"a.b": t}, tmp_path / "y.pth")
    assert torch.equal(read_checkpoint(tmp_path / "x.pth")["a.b"], t)
    assert torch.equal(read_checkpoint(tmp_path / "y.pth")["a.b"], t)


def test_weights_only_refuses_pickled_code(tmp_path):
    import collections
    torch.save({"state_dict": collections.Counter(a=1)}, tmp_path / "evil.pth")
    from ovsam_core import CheckpointError
    with pytest.raises(CheckpointError, match="evil.pth"):
        read_checkpoint(tmp_path / "evil.pth")


def test_missing_and_extra_key_are_named(spec, tmp_path):
    write_upstream_files(tmp_path)
    ck = torch.load(tmp_path / NECK_SPACE.filename, weights_only=True)
    del ck["state_dict"]["neck_student.level_encoding.weight"]
    ck["state_dict"]["neck_student.blocks.9.extra.weight"] = torch.zeros(2)
    torch.save(ck, tmp_path / NECK_SPACE.filename)
    with pytest.raises(CheckpointMismatchError) as e:
        load_model(spec.name, tmp_path, download=False, progress=False)
    msg = str(e.value)
    assert "neck.level_encoding.weight" in msg and "missing" in msg
    assert "neck.blocks.9.extra.weight" in msg and "unexpected" in msg
    assert e.value.missing == ["neck.level_encoding.weight"]
    assert e.value.unexpected == ["neck.blocks.9.extra.weight"]


def test_unmapped_key_of_a_file_is_unexpected(spec, tmp_path):
    write_upstream_files(tmp_path)
    sam = torch.load(tmp_path / SAM_VIT_H.filename, weights_only=True)
    sam["stray.weight"] = torch.zeros(1)
    torch.save(sam, tmp_path / SAM_VIT_H.filename)
    with pytest.raises(CheckpointMismatchError, match=r"stray.weight \(from sam_vit_h_4b8939.pth\)"):
        load_model(spec.name, tmp_path, download=False, progress=False)


def test_shape_mismatch_is_reported(spec, tmp_path):
    write_upstream_files(tmp_path)
    ck = torch.load(tmp_path / NECK_SPACE.filename, weights_only=True)
    ck["state_dict"]["neck_student.level_encoding.weight"] = torch.zeros(3, 3)
    torch.save(ck, tmp_path / NECK_SPACE.filename)
    with pytest.raises(CheckpointMismatchError, match=r"neck.level_encoding.weight: checkpoint \(3, 3\)"):
        load_model(spec.name, tmp_path, download=False, progress=False)


def test_offline_missing_files_message(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_upstream_files(tmp_path)
    (tmp_path / NECK_SPACE.filename).unlink()
    with pytest.raises(WeightsNotFoundError) as e:
        load_model(spec.name, tmp_path, progress=False)
    assert NECK_SPACE.filename in str(e.value)


def test_convert_roundtrip(spec, tmp_path):
    ref = write_upstream_files(tmp_path)
    out = convert_model(spec.name, tmp_path / "fused" / f"{spec.name}.safetensors", tmp_path,
                        download=False, progress=False)
    from safetensors import safe_open
    with safe_open(str(out), framework="pt") as f:
        keys = set(f.keys())
        assert f.metadata()["arch"] == "test"
    model_keys = set(load_model("ovsam-test").model.state_dict())
    assert model_keys <= keys and "classifier" in keys
    assert {k for k in keys if k not in model_keys and k != "classifier"} == \
        {f"text_encoder.{k}" for k in load_model("ovsam-test").text_encoder.state_dict()}
    _assert_loaded(load_model(spec.name, weights=out), ref)
    # found automatically as weights_dir/<name>.safetensors, without the upstream files
    _assert_loaded(load_model(spec.name, out.parent, download=False), ref)


def test_fused_file_of_another_arch_is_refused(spec, tmp_path):
    write_upstream_files(tmp_path)
    out = convert_model(spec.name, tmp_path / "f.safetensors", tmp_path, download=False, progress=False)
    from ovsam_core import CheckpointError
    with pytest.raises(CheckpointError, match="rn50x16"):
        load_model("ovsam-lvis", weights=out)


def test_ovsam_test_is_seeded_and_runs():
    a, b = load_model("ovsam-test"), load_model("ovsam-test")
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(v, w), k
    n = sum(p.numel() for p in a.model.parameters()) + sum(p.numel() for p in a.text_encoder.parameters())
    assert n < 10_000_000


def test_registry_lists_licences_and_hashes():
    spec = get_model_spec("ovsam-lvis")
    lic = spec.licenses
    assert "S-Lab" in lic["neck"] and "Apache" in lic["prompt_encoder"] and "OpenAI" in lic["clip"]
    assert all(len(f.sha256) == 64 for f in spec.files)
    with pytest.raises(KeyError, match="ovsam-lvis"):
        get_model_spec("nope")


def test_cli_models_and_user_errors(tmp_path):
    env = {"OVSAM_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": ""}
    run = lambda *a: subprocess.run([sys.executable, "-m", "ovsam_core.cli", *a], capture_output=True,  # noqa: E731
                                    text=True, env={**env, "PYTHONPATH": str(Path(__file__).parents[1])})
    r = run("models")
    assert r.returncode == 0 and "ovsam-coco-eval" in r.stdout and "S-Lab" in r.stdout
    r = run("download", "no-such-model")
    assert r.returncode == 2 and r.stderr.startswith("ovsam: error: unknown model 'no-such-model'")
    assert "Traceback" not in r.stderr
    r = run("download", "ovsam-lvis")
    assert r.returncode == 2 and "sam_vit_h_4b8939.pth" in r.stderr and "Traceback" not in r.stderr


def test_weights_id_follows_file_content(spec, tmp_path):
    """Caches (embeddings, text classifiers) are keyed by weights_id: it must change with the files."""
    import os
    write_upstream_files(tmp_path)
    a = load_model(spec.name, tmp_path, download=False, progress=False).weights_id
    assert a == load_model(spec.name, tmp_path, download=False, progress=False).weights_id
    f = tmp_path / NECK_SPACE.filename
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert load_model(spec.name, tmp_path, download=False, progress=False).weights_id != a
