"""Runtime selection (ISA, ``dtype="auto"``, advice), the OpenVINO encoder and the lean loading
path (chunked neck attention, meta-device + memory-mapped weights, lazy text, page release)."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from ovsam_core import Predictor, load_model
from ovsam_core.modeling.rel_pos_attention import ChunkedRelPosAttention, use_chunked_attention
from ovsam_core.runtime import auto as auto_mod
from ovsam_core.runtime import cpu_info, resolve_precision, validate_precision
from ovsam_core.runtime.int8_neck import INT8_LINEARS, int8_engine, quantized_neck
from ovsam_core.runtime.isa import AVX2_EMULATION
from ovsam_core.runtime.openvino_encoder import OpenVINOEncoder, openvino_available
from ovsam_core.weights.paging import release_mapped_weights
from segment_anything.modeling.image_encoder import Attention
from test_weights import spec  # noqa: F401 - the tiny upstream-layout model fixture
from upstream_files import write_upstream_files

AVX2_ENV = AVX2_EMULATION
CPU = torch.device("cpu")


def _run_py(code: str, env_extra: dict) -> str:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


# --------------------------------------------------------------------------- ISA and auto
def test_avx2_emulation_is_seen_and_auto_never_picks_bf16_there():
    code = ("import json, torch; from ovsam_core.runtime import cpu_info, resolve_precision, bf16_advice;"
            "i = cpu_info(); c = resolve_precision('auto', torch.device('cpu'));"
            "print(json.dumps([torch.backends.cpu.get_cpu_capability(), i.isa, i.fast_bf16, c.name, bf16_advice()]))")
    cap, isa, fast, choice, advice = json.loads(_run_py(code, AVX2_ENV).strip().splitlines()[-1])
    assert cap == "AVX2" and isa == "AVX2" and fast is False
    assert choice in ("fp32", "ov-fp32", "ov-mixed")  # never the emulated (slow) bf16, nor saturating int8
    assert "slower" in advice


def test_native_isa_matches_the_cpu_flags():
    info = cpu_info()
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    assert info.capability == torch.backends.cpu.get_cpu_capability()
    assert info.amx == ("amx_bf16" in flags and info.avx512)
    assert info.vnni == (info.amx or ("avx512_vnni" in flags and info.avx512))
    assert info.isa in ("AMX", "AVX512-BF16", "AVX512", "AVX2", "other")


@pytest.mark.skipif("avx512_vnni" not in (open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""),
                    reason="needs a CPU with AVX512-VNNI to cap")
def test_onednn_cap_below_bf16_keeps_vnni_and_drops_bf16():
    """``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI`` emulates a Cascade/Ice Lake class CPU (the bench's
    ``avx512-vnni`` case): int8 dot products, no native bf16; AVX2 caps drop both."""
    code = ("import json; from ovsam_core.runtime import cpu_info, validate_precision; import torch;"
            "i = cpu_info(); print(json.dumps([i.vnni, i.fast_bf16]))")
    uncapped = {k: "" for k in AVX2_ENV}  # also when this session itself runs under the AVX2 caps
    vnni, bf16 = json.loads(_run_py(code, {**uncapped, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"})
                            .strip().splitlines()[-1])
    assert vnni is True and bf16 is False
    vnni, bf16 = json.loads(_run_py(code, AVX2_ENV).strip().splitlines()[-1])
    assert vnni is False and bf16 is False


def test_auto_without_openvino_uses_the_best_torch_path(monkeypatch):
    import ovsam_core.runtime.openvino_encoder as ove

    monkeypatch.setattr(ove, "openvino_available", lambda int8=False: False)
    monkeypatch.setattr(auto_mod, "bf16_speedup", lambda refresh=False: 1.0)
    choice = resolve_precision("auto", CPU)
    info = cpu_info()
    assert choice.name == ("bf16" if info.amx else "fp32")
    assert choice.backend == "torch"
    monkeypatch.setattr(auto_mod, "bf16_speedup", lambda refresh=False: 2.0)
    assert resolve_precision("auto", CPU).name == ("bf16" if info.fast_bf16 else "fp32")
    # small models never leave the fp32 reference
    assert resolve_precision("auto", CPU, image_size=256).name == "fp32"


def test_auto_with_openvino_uses_low_precision_kernels_only_where_they_are_native(monkeypatch):
    import ovsam_core.runtime.openvino_encoder as ove
    from ovsam_core.runtime.isa import CpuInfo

    import ovsam_core.runtime.int8_neck as int8_neck

    nncf = {"installed": True}
    monkeypatch.setattr(ove, "openvino_available", lambda int8=False: nncf["installed"] or not int8)
    monkeypatch.setattr(int8_neck, "int8_engine", lambda: "onednn")
    cases = {(False, False, False, False): "ov-mixed",  # AVX2 laptop: the int8 neck in PyTorch
             (False, False, True, False): "ov-mixed",   # AVX-512 without bf16 or VNNI (Skylake-SP): same
             (False, False, True, True): "ov-mixed",    # AVX512-VNNI (Cascade Lake, Ice Lake)
             (False, True, True, True): "ov-mixed",     # AVX512-BF16 + VNNI (AMD Zen 4, Cooper Lake)
             (True, True, True, True): "ov-mixed"}      # AMX
    without_nncf = {(False, True, True, True): "ov-bf16", (True, True, True, True): "bf16",
                    (False, False, True, True): "ov-fp32"}
    for (amx, bf16, avx512, vnni), want in cases.items():
        info = CpuInfo(model="cpu", capability="AVX512" if avx512 else "AVX2", amx=amx, avx512_bf16=bf16,
                       avx512=avx512, emulation="", vnni=vnni)
        monkeypatch.setattr(auto_mod, "cpu_info", lambda info=info: info)
        nncf["installed"] = True
        assert resolve_precision("auto", CPU).name == want, info
        nncf["installed"] = False
        assert resolve_precision("auto", CPU).name == without_nncf.get((amx, bf16, avx512, vnni), want), info
        if bf16:
            validate_precision("ov-bf16", CPU)
        else:  # emulated bf16 is slow: an explicit request is refused with advice
            with pytest.raises(ValueError, match="AVX512-BF16 or AMX"):
                validate_precision("ov-bf16", CPU)
        validate_precision("ov-mixed", CPU)  # its neck runs in PyTorch where OpenVINO cannot quantise
        if vnni:
            validate_precision("ov-int8", CPU)
        else:  # OpenVINO's static int8 would saturate: refused here first, with advice
            with pytest.raises(ValueError, match="AVX512-VNNI or AMX.*--dtype auto or ov-fp32"):
                validate_precision("ov-int8", CPU)
        if not (vnni or bf16):  # a PyTorch that cannot run int8 layers: OpenVINO fp32
            monkeypatch.setattr(int8_neck, "int8_engine", lambda: None)
            assert resolve_precision("auto", CPU).name == "ov-fp32", info
            monkeypatch.setattr(int8_neck, "int8_engine", lambda: "onednn")


def test_runtime_report_names_the_pick_and_what_int8_can_do_here():
    from ovsam_core.runtime.report import runtime_report

    text = runtime_report("cpu")
    assert f"--dtype auto on cpu (real-size model): {resolve_precision('auto', CPU).name} (" in text
    int8 = [ln for ln in text.splitlines() if ln.startswith("int8: ")]
    assert len(int8) == 1, text
    assert ("no int8 dot products" in int8[0]) != cpu_info().vnni and ("PyTorch" in int8[0]) != cpu_info().vnni, int8


def test_fp16_on_cpu_error_gives_advice_for_this_machine():
    with pytest.raises(ValueError) as e:
        validate_precision("fp16", CPU)
    msg = str(e.value)
    assert "--dtype auto" in msg and "picks" in msg
    if not cpu_info().fast_bf16:
        assert "slower than fp32" in msg  # not "use bf16" on a CPU where bf16 is slow
    with pytest.raises(ValueError, match="choose one of"):
        validate_precision("int4", CPU)


def test_bf16_micro_benchmark_is_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path))
    calls = []
    real = auto_mod._time_workload
    monkeypatch.setattr(auto_mod, "_time_workload", lambda dt, repeats=1: calls.append(dt) or real(dt, 1))
    s1 = auto_mod.bf16_speedup()
    n = len(calls)
    assert n > 0 and s1 > 0
    assert auto_mod.bf16_speedup() == s1 and len(calls) == n  # second call: from the cache
    data = json.loads((tmp_path / "runtime" / "bf16-speedup.json").read_text())
    assert cpu_info().key in data


def test_predictor_auto_on_the_tiny_model_is_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path))
    p = Predictor("ovsam-test", progress=False, device="cpu")
    assert p.dtype == "fp32" and p.precision.reason != "requested"
    with pytest.warns(UserWarning, match="bf16") if not cpu_info().fast_bf16 else _nullcontext():
        Predictor("ovsam-test", progress=False, device="cpu", dtype="bf16")


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# --------------------------------------------------------------------------- chunked attention
@pytest.mark.parametrize("size,chunk", [((9, 7), 20), ((8, 8), 64), ((5, 6), 1000)])
def test_chunked_attention_equals_sams(size, chunk):
    torch.manual_seed(0)
    ref = Attention(32, 4, True, True, False, size).eval()
    torch.nn.init.normal_(ref.rel_pos_h, std=0.5)
    torch.nn.init.normal_(ref.rel_pos_w, std=0.5)
    x = torch.randn(2, *size, 32)
    exact, sdpa = copy.deepcopy(ref), copy.deepcopy(ref)
    assert use_chunked_attention(exact, chunk=chunk) == 1 and isinstance(exact, ChunkedRelPosAttention)
    use_chunked_attention(sdpa, chunk=chunk, kernel="sdpa")
    with torch.no_grad():
        want = ref(x)
        assert torch.allclose(exact(x), want, atol=1e-6, rtol=0)
        assert torch.allclose(sdpa(x), want, atol=1e-5, rtol=0)
    assert set(exact.state_dict()) == set(ref.state_dict())


def test_neck_uses_chunked_attention():
    m = load_model("ovsam-test").model
    assert all(isinstance(b.attn, ChunkedRelPosAttention) for b in m.neck.blocks)


# --------------------------------------------------------------------------- lean loading
def test_lazy_text_loads_on_first_use_only(spec, tmp_path):
    write_upstream_files(tmp_path)
    eager = load_model(spec.name, tmp_path, download=False, progress=False)
    lazy = load_model(spec.name, tmp_path, download=False, progress=False, with_text="lazy")
    assert not lazy.text_loaded and lazy.has_text
    repr(lazy)  # printing does not load it
    assert not lazy.text_loaded
    proxy = lazy.lazy_text_encoder()
    assert not lazy.text_loaded
    toks = eager.text_encoder.tokenize(["a cat"])
    assert torch.equal(proxy.encode(toks), eager.text_encoder.encode(toks))
    assert lazy.text_loaded
    none = load_model(spec.name, tmp_path, download=False, progress=False, with_text=False)
    assert none.text_encoder is None and not none.has_text


def test_weights_are_adopted_from_the_files_without_a_copy(spec, tmp_path):
    write_upstream_files(tmp_path)
    loaded = load_model(spec.name, tmp_path, download=False, progress=False)
    params = dict(loaded.model.named_parameters())
    assert not any(p.is_meta for p in params.values())
    assert not any(b.is_meta for b in loaded.text_encoder.buffers())
    # the neck weights are views of the memory-mapped file (not anonymous copies)
    maps = open("/proc/self/maps").read()
    ptr = params["neck.blocks.0.attn.qkv.weight"].untyped_storage().data_ptr()
    mapped = [ln for ln in maps.splitlines() if ln.split()[-1].startswith("/")
              and int(ln.split("-")[0], 16) <= ptr < int(ln.split()[0].split("-")[1], 16)]
    assert mapped, "the parameter is not in a file mapping"


def test_release_mapped_weights_keeps_the_values(spec, tmp_path):
    write_upstream_files(tmp_path)
    model = load_model(spec.name, tmp_path, download=False, progress=False).model
    x = torch.randn(1, 3, model.cfg.image_size, model.cfg.image_size)
    with torch.inference_mode():
        a = model.extract_features(x, after_stage=release_mapped_weights)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        assert release_mapped_weights(model) > 0
        b = model.extract_features(x)
    assert torch.equal(a.embedding, b.embedding)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # anonymous (ordinary) tensors are never touched
    plain = torch.nn.Linear(2048, 2048)
    assert release_mapped_weights(plain) == 0


# --------------------------------------------------------------------------- OpenVINO
needs_ov = pytest.mark.skipif(not openvino_available(int8=True), reason="pip install 'ovsam[openvino]'")


def _tiny():
    """The tiny test model and a seeded (1, 3, S, S) input."""
    torch.manual_seed(0)
    m = load_model("ovsam-test").model
    return m, torch.randn(1, 3, m.cfg.image_size, m.cfg.image_size)


@needs_ov
def test_openvino_encoder_fp32_and_int8_with_disk_cache(tmp_path):
    m, x = _tiny()
    ref = m.extract_features(x)
    calib = [torch.randn(1, 3, m.cfg.image_size, m.cfg.image_size) for _ in range(2)]
    precisions = [("fp32", 1e-4)]
    for prec, tol, usable, needs in (("bf16", 0.05, cpu_info().fast_bf16, "AVX512-BF16 or AMX"),
                                     ("mixed", 0.05, True, ""),  # its neck in PyTorch without VNNI
                                     ("int8", 0.15, cpu_info().vnni, "AVX512-VNNI or AMX")):
        if usable:
            precisions.append((prec, tol))
        else:  # OpenVINO would fail deep in its plugin (or emulate bf16): refused first, with the way out
            with pytest.raises(ValueError, match=f"{needs}.*use 'fp32'"):
                OpenVINOEncoder(m, "seed:0", prec, cache_dir=tmp_path)
    for prec, tol in precisions:
        enc = OpenVINOEncoder(m, "seed:0", prec, cache_dir=tmp_path, calibration=calib)
        if sys.platform == "linux":  # the IR's mapped weights were dropped after compiling
            assert enc.released > 0
        f = enc(x)
        for a, b in zip((ref.embedding, *ref.fpn, ref.c5), (f.embedding, *f.fpn, f.c5)):
            assert a.shape == b.shape
            assert ((a - b).norm() / a.norm()).item() < tol, prec
        xml = enc._sources[enc._graphs[-1]]  # the last OpenVINO graph this precision runs
        stamp = xml.stat().st_mtime_ns
        again = OpenVINOEncoder(m, "seed:0", prec, cache_dir=tmp_path, calibration=calib)
        assert again._sources == enc._sources and xml.stat().st_mtime_ns == stamp  # not converted again
        assert torch.equal(again(x).embedding, f.embedding)
    # another signature -> another cache entry
    other = OpenVINOEncoder(m, "other-weights", "fp32", cache_dir=tmp_path)
    assert other.dir != enc.dir


@needs_ov
def test_openvino_encoder_not_resident_compiles_per_encode_with_the_same_output(tmp_path):
    """``resident=False`` (``ovsam predict``): no stage stays compiled, the output is the resident one's."""
    m, x = _tiny()
    kept = OpenVINOEncoder(m, "seed:0", "fp32", cache_dir=tmp_path)
    once = OpenVINOEncoder(m, "seed:0", "fp32", cache_dir=tmp_path, resident=False)
    assert len(kept.compiled) == 2 and once.compiled == [] and once.released == 0
    a, b = kept(x), once(x)
    assert once.compiled == [] and (once.released > 0 or sys.platform != "linux")  # compiled, then freed
    for u, v in zip((a.embedding, *a.fpn, a.c5), (b.embedding, *b.fpn, b.c5)):
        assert torch.equal(u, v)
    assert torch.equal(once(x).embedding, a.embedding)  # and again on the next encode


@needs_ov
def test_predictor_explicit_openvino_on_the_tiny_model(tmp_path, monkeypatch):
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path))
    import numpy as np
    from ovsam_core import Prompt

    img = (np.random.RandomState(0).rand(64, 80, 3) * 255).astype(np.uint8)
    ref = Predictor("ovsam-test", progress=False, device="cpu", dtype="fp32")
    ov = Predictor("ovsam-test", progress=False, device="cpu", dtype="ov-fp32")
    a = ref.predict(img, Prompt.from_box(10, 10, 50, 40), ["cat", "dog"])
    b = ov.predict(img, Prompt.from_box(10, 10, 50, 40), ["cat", "dog"])
    assert ov.dtype == "ov-fp32" and ov.embed(img).signature.dtype == "ov-fp32"
    assert a.objects[0].label == b.objects[0].label
    inter = (a.objects[0].mask & b.objects[0].mask).sum()
    union = (a.objects[0].mask | b.objects[0].mask).sum()
    assert union == 0 or inter / union > 0.98


# --------------------------------------------------------------------------- int8 neck in PyTorch
needs_torch_int8 = pytest.mark.skipif(int8_engine() is None, reason="this PyTorch cannot run int8 layers")


@needs_torch_int8
def test_quantized_neck_is_close_and_leaves_the_model_untouched():
    """``ov-mixed``'s PyTorch stage 2: int8 blocks on a copy; the shared model keeps its fp32 layers."""
    torch.manual_seed(0)
    m = load_model("ovsam-test").model
    s = m.cfg.image_size
    feats = [torch.randn(1, c, s // k, s // k) for c, k in zip(m.cfg.backbone_channels, (4, 8, 16, 32))]
    engine = torch.backends.quantized.engine
    with torch.inference_mode():
        ref = m.neck(feats)
        q = quantized_neck(m.neck)
        out = q(feats)
        again = m.neck(feats)
    assert torch.backends.quantized.engine == engine  # the global engine was only borrowed
    assert torch.equal(again, ref)  # the model itself still computes the fp32 reference
    for block, qblock in zip(m.neck.blocks, q.blocks):
        for name in INT8_LINEARS:
            assert type(block.get_submodule(name)) is torch.nn.Linear and not hasattr(block.get_submodule(name), "qconfig")
            assert type(qblock.get_submodule(name)) is not torch.nn.Linear
        assert block.attn.kernel == "exact" and qblock.attn.kernel == "sdpa"
        assert qblock.norm1 is block.norm1  # everything else is shared, not copied
    assert ((out - ref).norm() / ref.norm()).item() < 0.05


@needs_ov
@needs_torch_int8
def test_openvino_mixed_with_the_neck_in_pytorch(tmp_path):
    """Stage 1 in OpenVINO, stage 2 in PyTorch int8: one graph compiled, same output resident or not."""
    m, x = _tiny()
    ref = m.extract_features(x)
    kept = OpenVINOEncoder(m, "seed:0", "mixed", cache_dir=tmp_path, neck_engine="torch")
    once = OpenVINOEncoder(m, "seed:0", "mixed", cache_dir=tmp_path, neck_engine="torch", resident=False)
    assert kept.neck_engine == "torch" and len(kept.compiled) == 1
    a, b = kept(x), once(x)
    for u, v in zip((a.embedding, *a.fpn, a.c5), (b.embedding, *b.fpn, b.c5)):
        assert torch.equal(u, v)
    for u, v, tol in zip((ref.embedding, *ref.fpn, ref.c5), (a.embedding, *a.fpn, a.c5), (0.05,) + (1e-4,) * 5):
        assert ((u - v).norm() / u.norm()).item() < tol  # trunk and FPN fp32; the neck int8
    with pytest.raises(ValueError, match="neck engine"):
        OpenVINOEncoder(m, "seed:0", "mixed", cache_dir=tmp_path, neck_engine="onnx")


@needs_ov
@needs_torch_int8
def test_mixed_under_avx2_caps_runs_its_neck_in_pytorch(tmp_path):
    """On an AVX2 CPU OpenVINO cannot quantise at run time: ``ov-mixed`` (auto's pick there) runs
    its int8 neck in PyTorch, and asking for OpenVINO's is refused with the way out."""
    code = textwrap.dedent(f"""
        import json, torch
        from ovsam_core.runtime import OpenVINOEncoder, resolve_precision
        from ovsam_core.weights.loader import load_model
        torch.manual_seed(0)
        m = load_model("ovsam-test").model
        x = torch.randn(1, 3, m.cfg.image_size, m.cfg.image_size)
        ref = m.extract_features(x).embedding
        enc = OpenVINOEncoder(m, "s", "mixed", cache_dir={str(tmp_path)!r})
        e = enc(x).embedding
        try:
            OpenVINOEncoder(m, "s", "mixed", cache_dir={str(tmp_path)!r}, neck_engine="openvino")
            msg = ""
        except ValueError as err:
            msg = str(err)
        print(json.dumps([enc.neck_engine, ((e - ref).norm() / ref.norm()).item(), msg,
                          resolve_precision("auto", torch.device("cpu"), 1024).name]))
        """)
    engine, rel, msg, auto = json.loads(_run_py(code, AVX2_ENV).strip().splitlines()[-1])
    assert engine == "torch" and rel < 0.05
    assert "AVX512-VNNI or AMX" in msg and "neck_engine='torch'" in msg
    assert auto == "ov-mixed"
