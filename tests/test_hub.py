"""Tests of ovsam_core.weights.hub against a fake Hugging Face Hub on 127.0.0.1.

No test touches the internet or the user's caches: every test gets its own ovsam cache
(``OVSAM_CACHE_DIR``) and Hugging Face home/cache, and files are a few KB.
"""
from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Dict, Iterator

import pytest
import torch
from huggingface_hub import constants as hf_constants
from safetensors import safe_open

from ovsam_core.weights import hub
from ovsam_core.weights.hub import (
    DownloadError,
    HashMismatchError,
    WeightsError,
    WeightsNotFoundError,
    cache_dir,
    cache_status,
    candidate_for,
    download_model,
    files_dir,
    pruned_filename,
    resolve_file,
    resolve_model_files,
)
from ovsam_core.weights.registry import (
    KeyRule,
    ModelSpec,
    WeightFile,
    get_model_spec,
    register_model,
    unregister_model,
)

from hf_server import FakeHub, sha256_bytes  # tests/ is on sys.path (pytest prepend mode)

RULES = (KeyRule("", "", target="image"),)


def blob(tag: str, n: int = 4096) -> bytes:
    """Deterministic, distinct content of ``n`` bytes."""
    seed = tag.encode()
    out = bytearray()
    i = 0
    while len(out) < n:
        out += sha256_bytes(seed + str(i).encode()).encode()
        i += 1
    return bytes(out[:n])


def wfile(role: str, filename: str, **kw: object) -> WeightFile:
    kw.setdefault("license", "test")
    kw.setdefault("rules", RULES)
    return WeightFile(role=role, filename=filename, **kw)  # type: ignore[arg-type]


def cache_entries() -> set:
    """Names in the cache's files/ folder (hidden temp folders included)."""
    d = files_dir()
    return {p.name for p in d.iterdir()} if d.exists() else set()


def network_requests(h: FakeHub) -> int:
    return sum(1 for _, p in h.requests if not p.startswith("/api/"))


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Own caches per test; online by default."""
    cache = tmp_path / "ovsam-cache"
    hf_home = tmp_path / "hf-home"
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(cache))
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    # huggingface_hub reads these environment variables once, at import, into
    # huggingface_hub.constants: patch the constants too.
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    # No user-agent telemetry: build_hf_headers would otherwise fetch an "agent harness"
    # registry from constants.ENDPOINT.
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    return cache


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """The fake Hub, with HF_ENDPOINT pointing at it.

    hub.py reads HF_ENDPOINT at call time and passes it to hf_hub_download(endpoint=...).
    huggingface_hub itself read HF_ENDPOINT at import into constants.ENDPOINT and
    constants.HUGGINGFACE_CO_URL_TEMPLATE (used when no endpoint is passed, and for the
    "is this a Hub host" test of redirects): patched too, so nothing can reach huggingface.co.
    """
    with FakeHub() as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        monkeypatch.setattr(hf_constants, "ENDPOINT", h.endpoint)
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            h.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        yield h


def go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)


# --------------------------------------------------------------------------- cache dir
def test_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"
    assert files_dir() == tmp_path / "elsewhere" / "files"
    monkeypatch.delenv("OVSAM_CACHE_DIR")
    import platformdirs

    assert cache_dir() == Path(platformdirs.user_cache_dir("ovsam"))


def test_download_goes_to_ovsam_cache_dir(fake_hub: FakeHub, isolated: Path) -> None:
    data = blob("x")
    wf = wfile("x", "x.pth", url=fake_hub.add_url_file("x.pth", data), sha256=sha256_bytes(data))
    p = resolve_file(wf, progress=False)
    assert p == isolated / "files" / "x.pth"


# --------------------------------------------------------------------------- downloads OK
@pytest.mark.parametrize("repo_type,lfs", [("model", False), ("model", True), ("space", True)])
def test_hf_download_hash_ok(fake_hub: FakeHub, repo_type: str, lfs: bool) -> None:
    data = blob(f"hf-{repo_type}-{lfs}")
    fake_hub.add_hf_file("org/repo", "models/neck.pth", data, repo_type=repo_type, lfs=lfs)
    wf = wfile("neck", "neck.pth", repo_id="org/repo", repo_type=repo_type,
               path_in_repo="models/neck.pth", sha256=sha256_bytes(data))
    p = resolve_file(wf, progress=False)
    assert p == files_dir() / "neck.pth"
    assert p.read_bytes() == data
    assert cache_entries() == {"neck.pth"}            # temp download folder removed
    heads = [path for m, path in fake_hub.requests if m == "HEAD"]
    prefix = "/spaces" if repo_type == "space" else ""
    assert heads == [f"{prefix}/org/repo/resolve/main/models/neck.pth"]
    # Second resolve: from the cache, no network, no re-hash needed.
    n = network_requests(fake_hub)
    assert resolve_file(wf, download=False) == p
    assert network_requests(fake_hub) == n


def test_hf_endpoint_read_at_call_time(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_ENDPOINT set after huggingface_hub was imported (its constants still say
    huggingface.co) is honoured: hub.py passes it as hf_hub_download(endpoint=...)."""
    monkeypatch.setattr(hf_constants, "ENDPOINT", "https://huggingface.co")
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        "https://huggingface.co/{repo_id}/resolve/{revision}/{filename}")
    data = blob("late-endpoint")
    fake_hub.add_hf_file("org/late", "w.pth", data, lfs=True)
    wf = wfile("w", "w.pth", repo_id="org/late", sha256=sha256_bytes(data))
    assert resolve_file(wf, progress=False).read_bytes() == data
    assert ("HEAD", "/org/late/resolve/main/w.pth") in fake_hub.requests


def test_url_download_hash_ok(fake_hub: FakeHub) -> None:
    data = blob("url")
    url = fake_hub.add_url_file("RN.pt", data)
    wf = wfile("clip", "RN.pt", url=url, sha256=sha256_bytes(data), size=len(data))
    p = resolve_file(wf, progress=True)
    assert p.read_bytes() == data
    assert cache_entries() == {"RN.pt"}
    assert ("GET", "/files/RN.pt") in fake_hub.requests


# --------------------------------------------------------------------------- failures
@pytest.mark.parametrize("where", ["url", "hf"])
def test_hash_mismatch_leaves_nothing(fake_hub: FakeHub, where: str) -> None:
    data = blob("served")
    wrong = sha256_bytes(b"what the registry expects")
    if where == "url":
        wf = wfile("a", "a.pth", url=fake_hub.add_url_file("a.pth", data), sha256=wrong)
    else:
        fake_hub.add_hf_file("org/r", "a.pth", data, lfs=True)
        wf = wfile("a", "a.pth", repo_id="org/r", sha256=wrong)
    with pytest.raises(HashMismatchError) as ei:
        resolve_file(wf, progress=False)
    msg = str(ei.value)
    assert "a.pth" in msg and wrong in msg and sha256_bytes(data) in msg
    assert ei.value.expected == wrong and ei.value.actual == sha256_bytes(data)
    assert isinstance(ei.value, WeightsError) and isinstance(ei.value, RuntimeError)
    assert cache_entries() == set()                    # no .part, no final file, no temp dir
    with pytest.raises(WeightsNotFoundError):          # and nothing usable for the next run
        resolve_file(wf, download=False)


@pytest.mark.parametrize("where", ["url", "hf"])
def test_interrupted_download_leaves_nothing(fake_hub: FakeHub, where: str) -> None:
    data = blob("big", 64 * 1024)
    if where == "url":
        url = fake_hub.add_url_file("big.pth", data)
        fake_hub.truncate(url)
        wf = wfile("b", "big.pth", url=url, sha256=sha256_bytes(data))
    else:
        path = fake_hub.add_hf_file("org/r", "big.pth", data)
        fake_hub.truncate(path)
        wf = wfile("b", "big.pth", repo_id="org/r", sha256=sha256_bytes(data))
    with pytest.raises(DownloadError) as ei:
        resolve_file(wf, progress=False)
    msg = str(ei.value)
    assert "big.pth" in msg and "--weights-dir" in msg
    assert isinstance(ei.value, WeightsNotFoundError)
    assert cache_entries() == set()
    assert sum(1 for m, _ in fake_hub.requests if m == "GET") >= 1


def test_download_404_is_download_error(fake_hub: FakeHub) -> None:
    wf = wfile("n", "nothere.pth", url=fake_hub.endpoint + "/files/nothere.pth")
    with pytest.raises(DownloadError, match="nothere.pth"):
        resolve_file(wf, progress=False)
    assert cache_entries() == set()


def _three_file_spec(h: FakeHub) -> ModelSpec:
    return ModelSpec(name="hub-test", arch="test", description="", files=(
        wfile("clip", "RN50x16.pt", url=h.endpoint + "/files/RN50x16.pt", sha256="0" * 64,
              alternatives=(wfile("clip", "open_clip_model.safetensors", repo_id="timm/x"),)),
        wfile("neck", "sam2clip.pth", repo_id="Org/models", repo_type="space",
              path_in_repo="models/sam2clip.pth"),
        wfile("head", "head.pth", repo_id="Org/models"),
    ))


@pytest.mark.parametrize("how", ["env", "download=False"])
def test_offline_missing_lists_every_file(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path, how: str) -> None:
    spec = _three_file_spec(fake_hub)
    download = True
    if how == "env":
        go_offline(monkeypatch)
    else:
        download = False
    wdir = tmp_path / "weights"
    wdir.mkdir()
    (wdir / "head.pth").write_bytes(b"head")          # one file present: not listed
    with pytest.raises(WeightsNotFoundError) as ei:
        resolve_model_files(spec, wdir, download=download, progress=False)
    msg = str(ei.value)
    for name in ("RN50x16.pt", "open_clip_model.safetensors", "sam2clip.pth"):
        assert name in msg
    assert "head.pth" not in msg
    assert "--weights-dir" in msg and str(files_dir()) in msg
    assert "HF_HUB_OFFLINE" in msg if how == "env" else "download=False" in msg
    assert "huggingface.co/spaces/Org/models/blob/main/models/sam2clip.pth" in msg
    assert {w.role for w in ei.value.missing} == {"clip", "neck"}
    assert network_requests(fake_hub) == 0
    assert cache_entries() == set()


def test_offline_single_file(monkeypatch: pytest.MonkeyPatch) -> None:
    go_offline(monkeypatch)
    wf = wfile("x", "only.pth", url="http://127.0.0.1:9/only.pth")
    with pytest.raises(WeightsNotFoundError, match="only.pth"):
        resolve_file(wf)


def test_local_only_file_without_source(tmp_path: Path) -> None:
    wf = wfile("x", "mine.pth")
    with pytest.raises(WeightsNotFoundError, match="no public download"):
        resolve_file(wf)
    (tmp_path / "mine.pth").write_bytes(b"1")
    assert resolve_file(wf, tmp_path) == tmp_path / "mine.pth"


def test_bad_weights_dir() -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_file(wfile("x", "x.pth"), "/nonexistent/ovsam-weights")


# --------------------------------------------------------------------------- local resolution
def test_weights_dir_has_priority_over_cache(fake_hub: FakeHub, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    data = blob("prio")
    wf = wfile("p", "p.pth", url=fake_hub.add_url_file("p.pth", data), sha256=sha256_bytes(data))
    cached = resolve_file(wf, progress=False)
    assert cached == files_dir() / "p.pth"
    wdir = tmp_path / "w"
    wdir.mkdir()
    (wdir / "p.pth").write_bytes(data)
    go_offline(monkeypatch)
    n = network_requests(fake_hub)
    assert resolve_file(wf, wdir) == wdir / "p.pth"
    assert network_requests(fake_hub) == n


def test_weights_dir_file_is_verified(tmp_path: Path) -> None:
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n"
    (tmp_path / "n.pth").write_bytes(pointer)
    wf = wfile("n", "n.pth", sha256=sha256_bytes(b"real"), url="http://127.0.0.1:9/n.pth")
    with pytest.raises(HashMismatchError, match="git lfs pull"):
        resolve_file(wf, tmp_path, download=False)


def test_weights_dir_own_file_warns_unless_strict(tmp_path: Path, caplog) -> None:
    """A user's own file under an official name (e.g. trained weights) loads with a warning."""
    (tmp_path / "n.pth").write_bytes(b"my own fine-tuned weights")
    wf = wfile("n", "n.pth", sha256=sha256_bytes(b"real"), url="http://127.0.0.1:9/n.pth")
    with caplog.at_level("WARNING"):
        assert resolve_file(wf, tmp_path, download=False) == tmp_path / "n.pth"
    assert "differs from the official release" in caplog.text
    with pytest.raises(HashMismatchError):
        resolve_file(wf, tmp_path, download=False, strict_hashes=True)


def test_weights_dir_accepts_path_in_repo(tmp_path: Path) -> None:
    """A `git clone` of the Space: models/<file> inside the folder."""
    data = blob("clone")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "h.pth").write_bytes(data)
    wf = wfile("h", "h.pth", repo_id="o/s", repo_type="space", path_in_repo="models/h.pth",
               sha256=sha256_bytes(data))
    assert resolve_file(wf, tmp_path, download=False) == tmp_path / "models" / "h.pth"


def test_alternative_filename_accepted(tmp_path: Path) -> None:
    alt = wfile("clip", "open_clip_model.safetensors", repo_id="timm/x")
    wf = wfile("clip", "RN50x16.pt", url="http://127.0.0.1:9/RN50x16.pt", sha256="0" * 64,
               alternatives=(alt,))
    (tmp_path / "open_clip_model.safetensors").write_bytes(b"alt")
    p = resolve_file(wf, tmp_path, download=False)
    assert p == tmp_path / "open_clip_model.safetensors"
    assert candidate_for(wf, p) is alt
    spec = ModelSpec(name="alt", arch="test", description="", files=(wf,))
    assert resolve_model_files(spec, tmp_path, download=False) == {"clip": p}
    assert cache_status(spec, tmp_path) == {"clip": True}
    assert cache_status(spec) == {"clip": False}


def test_alternative_downloaded_when_primary_fails(fake_hub: FakeHub) -> None:
    data = blob("alt")
    fake_hub.add_hf_file("timm/x", "open_clip_model.safetensors", data)
    alt = wfile("clip", "open_clip_model.safetensors", repo_id="timm/x")
    wf = wfile("clip", "RN50x16.pt", url=fake_hub.endpoint + "/files/missing.pt",
               sha256="0" * 64, alternatives=(alt,))
    p = resolve_file(wf, progress=False)
    assert p == files_dir() / "open_clip_model.safetensors" and p.read_bytes() == data


def test_verification_result_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = blob("v", 10_000)
    (tmp_path / "v.pth").write_bytes(data)
    wf = wfile("v", "v.pth", sha256=sha256_bytes(data))
    calls = []
    real = hub.sha256_file

    def counting(p: Path, **k: bool) -> str:
        calls.append(p)
        return real(p, **k)

    monkeypatch.setattr(hub, "sha256_file", counting)
    resolve_file(wf, tmp_path, download=False)
    resolve_file(wf, tmp_path, download=False)
    assert len(calls) == 1
    store = json.loads((cache_dir() / "verified.json").read_text())
    assert store[str((tmp_path / "v.pth").resolve())]["sha256"] == sha256_bytes(data)
    os.utime(tmp_path / "v.pth", ns=(1, 1))              # touched: hashed again
    resolve_file(wf, tmp_path, download=False)
    assert len(calls) == 2


def test_hf_cache_is_reused_offline(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import hf_hub_download

    data = blob("hfcache")
    fake_hub.add_hf_file("Org/s", "models/c.pth", data, repo_type="space", lfs=True)
    got = hf_hub_download("Org/s", "models/c.pth", repo_type="space")   # e.g. `hf download`
    go_offline(monkeypatch)
    wf = wfile("c", "c.pth", repo_id="Org/s", repo_type="space", path_in_repo="models/c.pth",
               sha256=sha256_bytes(data))
    assert resolve_file(wf) == Path(got)
    assert cache_entries() == set()


# --------------------------------------------------------------------------- keep_only
def _fake_sam() -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "image_encoder.patch_embed.proj.weight": torch.randn(8, 3, 4, 4, generator=g),
        "image_encoder.blocks.0.attn.qkv.weight": torch.randn(24, 8, generator=g),
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": torch.randn(2, 4, generator=g),
        "prompt_encoder.point_embeddings.0.weight": torch.randn(1, 8, generator=g),
        "prompt_encoder.not_a_point_embed.weight": torch.randn(1, 8, generator=g),
        "mask_decoder.iou_token.weight": torch.randn(1, 8, generator=g),
    }


def test_keep_only_prunes_and_reuses(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    sd = _fake_sam()
    buf = io.BytesIO()
    torch.save(sd, buf)
    data = buf.getvalue()
    sha = sha256_bytes(data)
    wf = wfile("prompt_encoder", "sam_vit_h_4b8939.pth",
               url=fake_hub.add_url_file("sam_vit_h_4b8939.pth", data), sha256=sha,
               rules=(KeyRule("prompt_encoder.", "pe."),),
               ignore=("image_encoder.", "mask_decoder."), keep_only=True)
    assert pruned_filename(wf) == "sam_vit_h_4b8939.prompt_encoder.safetensors"
    p = resolve_file(wf, progress=False)
    assert p == files_dir() / "sam_vit_h_4b8939.prompt_encoder.safetensors"
    # Only the pruned file (and its hash sidecar) remain: the big download is gone.
    assert cache_entries() == {p.name, p.name + ".sha256"}
    with safe_open(str(p), "pt") as f:
        keys = set(f.keys())
        meta = f.metadata()
        assert keys == {k for k in sd if k.startswith("prompt_encoder.")}
        for k in keys:
            assert torch.equal(f.get_tensor(k), sd[k])
    assert meta["source_file"] == "sam_vit_h_4b8939.pth"
    assert meta["source_sha256"] == sha
    assert candidate_for(wf, p) is wf
    spec = ModelSpec(name="sam", arch="test", description="", files=(wf,))
    assert cache_status(spec) == {"prompt_encoder": True}
    # Second resolve: offline, from the pruned file, no network.
    go_offline(monkeypatch)
    n = network_requests(fake_hub)
    assert resolve_file(wf) == p
    assert network_requests(fake_hub) == n
    # A pruned file made from another version of the source is not used.
    other = wfile("prompt_encoder", "sam_vit_h_4b8939.pth", url=wf.url, sha256="1" * 64,
                  rules=wf.rules, keep_only=True)
    with pytest.raises(WeightsNotFoundError):
        resolve_file(other)
    # Tampering with the pruned file is detected.
    p.write_bytes(p.read_bytes() + b" ")
    with pytest.raises(HashMismatchError):
        resolve_file(wf)


def test_keep_only_without_matching_keys(fake_hub: FakeHub) -> None:
    buf = io.BytesIO()
    torch.save({"image_encoder.w": torch.zeros(2)}, buf)
    data = buf.getvalue()
    wf = wfile("pe", "s.pth", url=fake_hub.add_url_file("s.pth", data), sha256=sha256_bytes(data),
               rules=(KeyRule("prompt_encoder.", "pe."),), keep_only=True)
    with pytest.raises(WeightsError, match="prompt_encoder"):
        resolve_file(wf, progress=False)
    assert cache_entries() == set()


# --------------------------------------------------------------------------- no published hash
def test_unknown_sha_is_recorded_and_tamper_detected(fake_hub: FakeHub,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    data = blob("nohash")
    fake_hub.add_hf_file("Org/models", "clip2sam.pth", data, lfs=True)
    wf = wfile("clip2sam", "clip2sam.pth", repo_id="Org/models")     # sha256=None
    with caplog.at_level(logging.WARNING, logger="ovsam_core.weights.hub"):
        p = resolve_file(wf, progress=False)
    assert "no sha256" in caplog.text
    sidecar = p.with_name(p.name + ".sha256")
    assert sidecar.read_text().split()[0] == sha256_bytes(data)
    assert cache_entries() == {"clip2sam.pth", "clip2sam.pth.sha256"}
    assert resolve_file(wf, download=False) == p                       # unchanged: fine
    p.write_bytes(data[:-1] + b"X")                                     # tampered
    with pytest.raises(HashMismatchError) as ei:
        resolve_file(wf, download=False)
    assert ei.value.expected == sha256_bytes(data)
    assert ".sha256" in str(ei.value)


def test_cached_file_without_sidecar_gets_one(caplog: pytest.LogCaptureFixture) -> None:
    files_dir().mkdir(parents=True)
    (files_dir() / "manual.pth").write_bytes(b"copied by hand")
    wf = wfile("m", "manual.pth", repo_id="Org/models")
    with caplog.at_level(logging.WARNING, logger="ovsam_core.weights.hub"):
        assert resolve_file(wf, download=False) == files_dir() / "manual.pth"
    assert (files_dir() / "manual.pth.sha256").is_file()


# --------------------------------------------------------------------------- model level
@pytest.fixture
def registered(fake_hub: FakeHub) -> Iterator[ModelSpec]:
    a, b = blob("ma"), blob("mb")
    fake_hub.add_hf_file("Org/ovsam", "models/a.pth", a, repo_type="space", lfs=True)
    spec = register_model(ModelSpec(name="hub-test-model", arch="test", description="", files=(
        wfile("neck", "a.pth", repo_id="Org/ovsam", repo_type="space", path_in_repo="models/a.pth",
              sha256=sha256_bytes(a)),
        wfile("head", "b.pth", url=fake_hub.add_url_file("b.pth", b), sha256=sha256_bytes(b)),
    )), overwrite=True)
    yield spec
    unregister_model(spec.name)


def test_download_model_and_cache_status(registered: ModelSpec,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    spec = get_model_spec("hub-test-model")
    assert cache_status(spec) == {"neck": False, "head": False}
    paths = download_model(spec, progress=False)
    assert paths == {"neck": files_dir() / "a.pth", "head": files_dir() / "b.pth"}
    assert cache_status(spec) == {"neck": True, "head": True}
    go_offline(monkeypatch)
    assert resolve_model_files(spec) == paths


def test_model_download_failures_are_collected(fake_hub: FakeHub) -> None:
    spec = ModelSpec(name="broken", arch="test", description="", files=(
        wfile("a", "gone1.pth", url=fake_hub.endpoint + "/files/gone1.pth"),
        wfile("b", "gone2.pth", repo_id="Org/none"),
    ))
    with pytest.raises(DownloadError) as ei:
        resolve_model_files(spec, progress=False)
    msg = str(ei.value)
    assert "gone1.pth" in msg and "gone2.pth" in msg and "--weights-dir" in msg
    assert cache_entries() == set()
