"""The image encoder (CLIP trunk + SAM2CLIP neck + FPN) compiled by OpenVINO: fp32, bf16, mixed or int8.

Optional: ``pip install "ovsam[openvino]"``. The encoder is converted from the loaded PyTorch
model once, as two OpenVINO IR graphs run one after the other (``stage1``: CLIP trunk and FPN,
image -> P2..P5 and C2..C5: what names the objects; ``stage2``: the SAM2CLIP neck, C2..C5 ->
embedding: what shapes the masks), and saved in the cache folder under a key of
the model signature (model, weights, architecture, precision, calibration set, ovsam and
OpenVINO versions). Every later start compiles that IR (a few seconds). The PyTorch trunk and
neck are then never run, so their memory-mapped weights are never read (except by ``mixed``
without VNNI, whose stage 2 is a quantised PyTorch copy of the neck).

Precisions:

* ``fp32``: fp32 IR, fp32 arithmetic (embedding rel. error ~1e-6 against PyTorch fp32).
* ``bf16``: stage 1 as in ``fp32`` (the FPN and C5 features name the objects: in bf16 they
  reorder near-tied classes of the top-5), stage 2 with fp16-stored weights run at OpenVINO's
  bf16 inference precision: for CPUs with AVX512-BF16 or AMX only (elsewhere bf16 is emulated).
* ``mixed``: stage 1 as in ``fp32``; the linear layers of stage 2's transformer blocks in int8,
  with int8 weights per output channel and activations quantised at run time, no calibration
  set. On CPUs with int8 dot products (AVX512-VNNI or AMX) stage 2 is an OpenVINO graph (NNCF
  weight compression, activations quantised per group of :data:`DYNAMIC_GROUP` values, the rest
  of stage 2 in bf16 where bf16 is native, else fp32). Elsewhere OpenVINO refuses run-time
  quantisation, and stage 2 runs in PyTorch instead (:mod:`.int8_neck`: oneDNN's int8 linear
  layers, the rest fp32): ``neck_engine`` says which.
* ``int8``: NNCF post-training quantisation of the fp32 IR, stage by stage (calibration set:
  :mod:`.calibration`).

Memory: compiling a graph maps its IR weights and repacks them into the plugin's own layouts;
the mapped pages are then dropped from this process (``madvise``; they stay in the page cache),
so the two stages' mapped weights never coexist and a running encoder holds one copy of its
weights (~1.2 GB in fp32, ~1.0 GB in bf16 for RN50x16). Not resident (``ovsam predict``): each
stage's activations are released after it ran (``CompiledModel.release_memory``) and the outputs
are written straight into arrays that the caller keeps. Resident (a server, a notebook, the
bench): stage 2 reads stage 1's outputs in place and both stages keep their activation memory
between encodes, the faster choice for a process that encodes many images. ``ovsam predict``
(real-size, one box) peaks at 2.2 GB with ``mixed`` and with ``fp32`` on a 2-core AMD Zen 4
(``tests/test_memory.py``), during stage 1's inference.

One-off costs (real-size RN50x16 encoder, 2-core CPU): converting to the fp32 IR takes 2-7 min
and 4-5 GB; the bf16 and mixed IRs are derived from it in seconds; int8 calibration collects
activations of 1024² images (GBs per image), so ``ov-int8`` is opt-in.
"""
from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..modeling.ovsam import OVSAM, ImageFeatures
from .isa import CpuInfo
from .calibration import (CALIBRATION_ENV, CALIBRATION_IMAGES, OpenVINOUnavailable, calibration_inputs,
                          default_calibration_images, files_digest, tensors_digest)
from .winograd import CHANNELS as WINOGRAD_CHANNELS
from .winograd import winograd_layers, winograd_rewrite

log = logging.getLogger(__name__)

__all__ = ["OpenVINOEncoder", "OpenVINOUnavailable", "openvino_available", "calibration_inputs",
           "default_calibration_images", "release_file_pages", "CALIBRATION_ENV", "CALIBRATION_IMAGES",
           "PRECISIONS"]

PRECISIONS = ("fp32", "bf16", "mixed", "int8")
#: The two graphs, run in this order, and their output names (stage 2's inputs: C2..C5).
STAGES = {"stage1": ("p2", "p3", "p4", "p5", "c2", "c3", "c4", "c5"), "stage2": ("embedding",)}
FEATURES = ("c2", "c3", "c4", "c5")
#: OpenVINO inference precision of each stage per encoder precision (int8 layers run int8;
#: ``native`` = bf16 where the CPU multiplies bf16 natively, else f32).
INFERENCE_PRECISION = {"fp32": {"stage1": "f32", "stage2": "f32"}, "bf16": {"stage1": "f32", "stage2": "bf16"},
                       "mixed": {"stage1": "f32", "stage2": "native"}, "int8": {"stage1": "f32", "stage2": "f32"}}
#: What a precision needs from the CPU: (:class:`~.isa.CpuInfo` flag, in words), checked here and
#: by ``validate_precision``. Without VNNI, OpenVINO's static int8 kernels saturate (u8 x s8 pairs
#: in 16 bits): under AVX2 caps the tiny test model's int8 embedding error was 0.26 against 0.01
#: with VNNI, and no faster than fp32. (``mixed`` runs its int8 neck in PyTorch there.)
NEEDS = {"bf16": ("fast_bf16", "native bf16 (AVX512-BF16 or AMX; emulated elsewhere, several times "
                               "slower than fp32)"),
         "int8": ("vnni", "int8 dot products (AVX512-VNNI or AMX; without them its int8 is no faster than "
                          "fp32, and saturates)")}
NECK_ENGINES = ("openvino", "torch")
#: ``mixed``: activations of stage 2's matrix products are quantised per group of this many values.
DYNAMIC_GROUP = 128
#: ``mixed``: the layers with int8 weights (names in the converted graph): the neck's transformer
#: blocks' qkv, proj and MLP linears (~73 % of the neck's multiply-adds).
INT8_LAYERS = r"\.blocks\.\d+\.(mlp\.lin[12]|attn\.(qkv|proj))/"
LAYOUT = "two-stage-v2"  # part of the cache key: the files of a cache entry
#: While a stage compiles, its mapped IR weights are dropped from memory this often (seconds).
TRIM_EVERY_S = 0.05


def openvino_available(int8: bool = False) -> bool:
    """Whether ``openvino`` (and ``nncf`` when ``int8``) can be imported."""
    import importlib.util

    mods = ("openvino", "nncf") if int8 else ("openvino",)
    return all(importlib.util.find_spec(m) is not None for m in mods)


class _Stage1(nn.Module):
    """(1, 3, S, S) normalised image -> P2..P5, C2..C5."""

    def __init__(self, model: OVSAM) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        m = self.model
        feats = list(m.backbone(x))
        return (*m.fpn_neck(feats), *feats)


class _Stage2(nn.Module):
    """C2..C5 -> (1, prompt_dim, S/16, S/16) image embedding (the whole SAM2CLIP neck)."""

    def __init__(self, model: OVSAM) -> None:
        super().__init__()
        self.model = model

    def forward(self, c2: torch.Tensor, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor):
        return self.model.neck([c2, c3, c4, c5])


class OpenVINOEncoder:
    """``extract_features`` of an :class:`OVSAM` model, run by OpenVINO's CPU plugin.

    Args:
        model: the loaded PyTorch model (read at a conversion, and by ``mixed``'s PyTorch neck).
        signature: identifies the weights (e.g. ``LoadedModel.weights_id``); part of the cache key.
        precision: ``fp32`` (OpenVINO kernels, fp32 arithmetic), ``bf16`` (the neck in bf16:
            AVX512-BF16 / AMX CPUs), ``mixed`` (the neck's matrix products int8, dynamically
            quantised; in PyTorch on CPUs without AVX512-VNNI / AMX) or ``int8`` (NNCF PTQ).
        cache_dir: where the IR lives (default ``<ovsam cache>/openvino``).
        calibration: int8 only: (1, 3, S, S) inputs (:func:`calibration_inputs`); default the
            bundled photographs.
        threads: inference threads (default: torch's thread count).
        notify: called with a one-line message before a (slow, one-off) conversion or calibration.
        resident: keep both compiled stages in memory (default; a compile from the cached IR takes
            ~1-2 s a stage), stage 1 in its Winograd form (:mod:`.winograd`, except ``int8``).
            ``False``: each encode compiles a stage, runs it and frees it before the next stage is
            compiled, so peak memory holds one stage's repacked weights, not both: for a process
            that encodes once (``ovsam predict``), where it costs no time.
        neck_engine: ``mixed`` only: where stage 2 runs, ``openvino`` (default on CPUs with VNNI or
            AMX) or ``torch`` (:mod:`.int8_neck`, the default elsewhere).

    Attributes:
        compiled: the compiled OpenVINO stages, in order; released: bytes of mapped IR dropped after
        compiling; neck_engine: where stage 2 runs (``openvino`` or ``torch``); winograd: whether
        stage 1 is the Winograd graph.
    """

    def __init__(self, model: OVSAM, signature: str, precision: str = "fp32", *,
                 cache_dir: Optional[Path] = None, calibration: Optional[Sequence[torch.Tensor]] = None,
                 threads: Optional[int] = None, notify: Optional[Callable[[str], None]] = None,
                 resident: bool = True, neck_engine: Optional[str] = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown OpenVINO precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if precision in NEEDS:
            from .isa import cpu_info

            flag, what = NEEDS[precision]
            if not getattr(cpu_info(), flag):  # the plugin would fail deep inside (or emulate bf16, slowly)
                raise ValueError(f"OpenVINO precision {precision!r} needs {what}; this CPU is "
                                 f"{cpu_info().describe()}: use 'fp32'")
        self.neck_engine = _neck_engine(precision, neck_engine)
        nncf_needed = precision == "int8" or (precision == "mixed" and self.neck_engine == "openvino")
        if not openvino_available(int8=nncf_needed):
            what = "openvino and nncf" if nncf_needed else "openvino"
            raise OpenVINOUnavailable(f"{what} not installed: pip install 'ovsam[openvino]', "
                                      "or use --dtype fp32")
        import openvino as ov

        self.precision = precision
        self.image_size = model.cfg.image_size
        calib = list(calibration) if calibration is not None else None
        calib_files: List[Path] = []
        calib_id = ""
        if precision == "int8":
            if calib is None:  # keyed by the files; read only if a quantisation is needed
                calib_files = default_calibration_images()
                calib_id = files_digest(calib_files)
            else:
                calib_id = tensors_digest(calib)
        from .. import __version__

        def key(*extra) -> str:
            src = json.dumps([signature, model.cfg.to_dict(), __version__, ov.__version__, LAYOUT, *extra],
                             sort_keys=True, default=str)
            return hashlib.sha256(src.encode()).hexdigest()[:16]

        root = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
        self.key = key(precision, calib_id)
        self.dir = root / self.key
        self._core = core = ov.Core()
        threads = threads or torch.get_num_threads()
        self._config = {"INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY",
                        "INFERENCE_PRECISION_HINT": "f32"}
        fp32_dir = root / key("fp32", "")
        # where each stage's IR lives: bf16 keeps stage 1 in the fp32 folder (not stored twice)
        own = {"fp32": (), "bf16": ("stage2",), "mixed": ("stage2",), "int8": tuple(STAGES)}[precision]
        # the OpenVINO graphs run (a PyTorch stage 2 needs only stage 1's)
        self._graphs = ("stage1",) if self.neck_engine == "torch" else tuple(STAGES)
        sources = {s: (self.dir if s in own else fp32_dir) / f"{s}.xml" for s in self._graphs}
        if not all(x.is_file() for x in sources.values()):
            say = notify or (lambda msg: None)
            if not (fp32_dir / "stage2.xml").is_file():  # the others are derived from the fp32 IR
                say(f"converting the image encoder to OpenVINO once (a few minutes; cached in {root})")
                _write_folder(fp32_dir, lambda tmp: self._convert(model, tmp))
            if precision == "bf16" and not sources["stage2"].is_file():
                _write_folder(self.dir, lambda tmp: ov.save_model(
                    core.read_model(str(fp32_dir / "stage2.xml")), str(tmp / "stage2.xml"), compress_to_fp16=True))
            elif precision == "mixed" and "stage2" in sources and not sources["stage2"].is_file():
                _write_folder(self.dir, lambda tmp: _compress_weights(core, fp32_dir / "stage2.xml", tmp / "stage2.xml"))
            elif precision == "int8" and not sources["stage2"].is_file():
                say(f"calibrating the int8 encoder once (slow, GBs per calibration image; cached in {root})")
                if calib is None:
                    calib = calibration_inputs(calib_files, self.image_size)
                _write_folder(self.dir, lambda tmp: self._quantize(fp32_dir, tmp, calib))
        # a resident encoder's stage 1 computes its mid-size 3x3 convolutions by Winograd (:mod:`.winograd`):
        # faster, for more weight memory than ``ovsam predict``'s lean graph holds
        self.winograd = resident and precision != "int8" and bool(winograd_layers(_Stage1(model)))
        if self.winograd:  # a cache entry of its own, keyed by which layers are rewritten
            winograd_dir = root / key("fp32", "", "winograd", WINOGRAD_CHANNELS)
            sources["stage1"] = winograd_dir / "stage1.xml"
            if not sources["stage1"].is_file():
                (notify or (lambda msg: None))(f"converting the resident encoder's trunk to OpenVINO once "
                                               f"(a minute; cached in {root})")
                _write_folder(winograd_dir, lambda tmp: self._convert(model, tmp, ("stage1",), winograd=True))
        self._sources = sources
        self._model = model if self.neck_engine == "torch" else None  # its neck is quantised from it
        self._torch_neck = self._build_torch_neck() if self.neck_engine == "torch" and resident else None
        self.resident = resident
        self.released = 0
        self.compiled = [self._compile(s) for s in self._graphs] if resident else []
        self._requests = [c.create_infer_request() for c in self.compiled]

    def _compile(self, stage: str):
        """A stage compiled from its file (weights mapped), its mapped pages dropped while the plugin
        repacks them (every :data:`TRIM_EVERY_S`; a page read again comes back from the page cache)
        and after: the mapped and the repacked weights never both fill memory, nor do two stages'."""
        xml = self._sources[stage]
        hint = INFERENCE_PRECISION[self.precision][stage]
        config = {**self._config, "INFERENCE_PRECISION_HINT": hint}
        if hint == "native":
            from .isa import cpu_info

            config["INFERENCE_PRECISION_HINT"] = "bf16" if cpu_info().fast_bf16 else "f32"
        if self.precision == "mixed" and stage == "stage2":
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = DYNAMIC_GROUP
        weights = xml.with_suffix(".bin")
        done = threading.Event()

        def trim() -> None:
            while not done.wait(TRIM_EVERY_S):
                release_file_pages(weights)

        trimmer = threading.Thread(target=trim, daemon=True)
        trimmer.start()
        try:
            compiled = self._core.compile_model(str(xml), "CPU", config)
        finally:
            done.set()
            trimmer.join()
        self.released += release_file_pages(weights)
        return compiled

    def _stage(self, i: int):
        """(compiled stage ``i``, its infer request): the resident ones, or compiled now."""
        if self.resident:
            return self.compiled[i], self._requests[i]
        c = self._compile(self._graphs[i])
        return c, c.create_infer_request()

    def _convert(self, model: OVSAM, out: Path, graphs: Sequence[str] = tuple(STAGES),
                 winograd: bool = False) -> None:
        """Write the fp32 IR of ``graphs`` into ``out`` (stage 1 by Winograd with ``winograd``)."""
        import openvino as ov

        size = self.image_size
        feats = [(1, c, size // s, size // s) for c, s in zip(model.cfg.backbone_channels, (4, 8, 16, 32))]
        log.info("converting the image encoder to OpenVINO (once; cached): %s", ", ".join(graphs))
        stage1 = winograd_rewrite(_Stage1(model)) if winograd else _Stage1(model)
        made = {"stage1": (stage1, [(1, 3, size, size)]), "stage2": (_Stage2(model), feats)}
        for name in graphs:
            graph, shapes = made[name]
            with torch.no_grad():
                ov_model = ov.convert_model(graph.eval(), example_input=tuple(torch.zeros(s) for s in shapes),
                                            input=[(s, ov.Type.f32) for s in shapes])
            for port, out_name in zip(ov_model.outputs, STAGES[name]):
                port.get_tensor().set_names({out_name})
            ov.save_model(ov_model, str(out / f"{name}.xml"), compress_to_fp16=False)
            del ov_model
            gc.collect()  # the traced graph of stage 1 is not kept while stage 2 is traced

    def _quantize(self, fp32_dir: Path, out: Path, calib: List[torch.Tensor]) -> None:
        """NNCF PTQ of each stage; stage 2 is calibrated on the fp32 stage 1's C2..C5 of the same images."""
        import nncf
        import openvino as ov

        log.info("quantising the image encoder to int8 on %d calibration images (once; cached)", len(calib))
        inputs = [x.numpy() for x in calib]
        for s in STAGES:
            xml = str(fp32_dir / f"{s}.xml")
            q = nncf.quantize(self._core.read_model(xml), nncf.Dataset(inputs), subset_size=len(inputs),
                              model_type=nncf.ModelType.TRANSFORMER, preset=nncf.QuantizationPreset.MIXED)
            ov.save_model(q, str(out / f"{s}.xml"), compress_to_fp16=False)
            del q
            if s == "stage1":
                fp32 = self._core.compile_model(xml, "CPU", self._config)
                idx = [STAGES["stage1"].index(n) for n in FEATURES]
                inputs = [tuple(np.array(r[fp32.output(i)]) for i in idx) for r in map(fp32, inputs)]
                del fp32

    def __call__(self, x: torch.Tensor) -> ImageFeatures:
        """Encode a (1, 3, S, S) fp32 input; returns fp32 :class:`ImageFeatures` (as extract_features)."""
        inp = {0: x.detach().cpu().float().contiguous().numpy()}
        if self.resident:
            return self._encode_resident(inp)
        import openvino as ov

        c1, first = self._stage(0)
        # outputs written straight into arrays of ours, which outlive the requests' memory
        out = {n: np.empty(tuple(c1.output(i).get_shape()), np.float32) for i, n in enumerate(STAGES["stage1"])}
        for i, n in enumerate(STAGES["stage1"]):
            first.set_output_tensor(i, ov.Tensor(out[n], shared_memory=True))
        first.infer(inp)
        c1.release_memory()  # stage 1's activations (~0.7 GB fp32 at 1024²) are not held while stage 2 runs
        del c1, first  # not resident: stage 1's weights go too
        if self.neck_engine == "torch":  # built now, after stage 1 is freed, and freed in turn
            neck = self._build_torch_neck()
            emb = self._run_torch_neck([out[n] for n in FEATURES], neck)
            del neck
            for n in FEATURES[:-1]:
                del out[n]
            return _features(out, emb)
        c2, second = self._stage(1)
        emb = np.empty(tuple(c2.output(0).get_shape()), np.float32)
        second.set_output_tensor(0, ov.Tensor(emb, shared_memory=True))
        second.infer({i: out[n] for i, n in enumerate(FEATURES)}, share_inputs=True)  # no copy of C2..C5
        for n in FEATURES[:-1]:  # C2..C4 (~175 MB at 1024²) are not kept
            del out[n]
        c2.release_memory()
        del c2, second
        return _features(out, emb)

    def _encode_resident(self, inp) -> ImageFeatures:
        """Both stages compiled: stage 2 reads C2..C5 where stage 1 wrote them (no copy), and each
        keeps its activation memory for the next encode (no page faults); what is returned is
        copied out. ~0.5 s faster at 1024² than writing every output into fresh arrays."""
        first = self._requests[0]
        first.infer(inp)
        names = STAGES["stage1"]
        if self._torch_neck is not None:  # reads C2..C5 where stage 1 wrote them
            emb = self._run_torch_neck([first.get_output_tensor(names.index(n)).data for n in FEATURES],
                                       self._torch_neck)
        else:
            emb = self._run_second(first)
        out = {n: np.array(first.get_output_tensor(names.index(n)).data) for n in ("p2", "p3", "p4", "p5", "c5")}
        return _features(out, emb)

    def _run_second(self, first) -> np.ndarray:
        """Stage 2 (OpenVINO, resident) on stage 1's outputs in place; a copy of the embedding."""
        second = self._requests[1]
        names = STAGES["stage1"]
        for i, n in enumerate(FEATURES):
            second.set_input_tensor(i, first.get_output_tensor(names.index(n)))
        second.infer()
        return np.array(second.get_output_tensor(0).data)

    def _build_torch_neck(self) -> nn.Module:
        """Stage 2 in PyTorch (:mod:`.int8_neck`, ~1 s for RN50x16). The fp32 linear layers it
        quantised are not run by this encoder: their mapped pages are dropped again."""
        from ..weights.paging import release_mapped_weights
        from .int8_neck import INT8_LINEARS, quantized_neck

        neck = self._model.neck
        q = quantized_neck(neck)
        release_mapped_weights(*(b.get_submodule(n) for b in neck.blocks for n in INT8_LINEARS))
        return q

    @staticmethod
    def _run_torch_neck(feats: Sequence[np.ndarray], neck: nn.Module) -> np.ndarray:
        """The PyTorch stage 2 on C2..C5 arrays (read, not copied) -> the embedding."""
        with torch.inference_mode():
            return neck([torch.from_numpy(f) for f in feats]).numpy()


def mixed_neck_engine(info: CpuInfo) -> Optional[str]:
    """Where ``mixed``'s int8 neck runs on the CPU ``info``: ``openvino`` with int8 dot products
    (VNNI or AMX: OpenVINO quantises at run time only there), else ``torch`` where PyTorch runs
    dynamically quantised layers (:func:`.int8_neck.int8_engine`), else ``None`` (no ``mixed``)."""
    if info.vnni:
        return "openvino"
    from .int8_neck import int8_engine

    return "torch" if int8_engine() is not None else None


def _neck_engine(precision: str, requested: Optional[str]) -> str:
    """Where stage 2 runs: OpenVINO, except ``mixed`` where :func:`mixed_neck_engine` says PyTorch."""
    from .int8_neck import int8_engine
    from .isa import cpu_info

    if requested is not None and requested not in NECK_ENGINES:
        raise ValueError(f"unknown neck engine {requested!r}; choose one of {', '.join(NECK_ENGINES)}")
    if precision != "mixed":
        if requested == "torch":
            raise ValueError("neck_engine='torch' is only for precision 'mixed'")
        return "openvino"
    native = mixed_neck_engine(cpu_info())
    engine = requested or native
    if engine == "openvino" and native != "openvino":
        raise ValueError("OpenVINO quantises the neck's activations at run time only with int8 dot products "
                         f"(AVX512-VNNI or AMX); this CPU is {cpu_info().describe()}: use neck_engine='torch'")
    if engine is None or (engine == "torch" and int8_engine() is None):
        raise ValueError("precision 'mixed' needs int8 layers, and this PyTorch cannot run dynamically "
                         "quantised ones on this CPU: use 'fp32'")
    return engine


def _features(out, emb: np.ndarray) -> ImageFeatures:
    t = {n: torch.from_numpy(v) for n, v in out.items()}
    return ImageFeatures(embedding=torch.from_numpy(emb), fpn=(t["p2"], t["p3"], t["p4"], t["p5"]), c5=t["c5"])


def _compress_weights(core, src: Path, dst: Path) -> None:
    """``mixed``'s stage 2: the fp32 IR with int8 weights (per output channel, symmetric) in the
    transformer blocks' linear layers only (:data:`INT8_LAYERS`).

    The patch embeddings and the output convolutions keep their weights: in int8 they doubled
    the embedding's error on the parity case (1.5e-2 against 9e-3 rel. L2; mask IoU 0.974).
    """
    import re

    import nncf
    import openvino as ov

    model = core.read_model(str(src))
    weighted = [op.get_friendly_name() for op in model.get_ops()
                if op.get_type_name() in ("MatMul", "Convolution", "ConvolutionBackpropData", "Gather")]
    keep = [n for n in weighted if not re.search(INT8_LAYERS, n)]
    if len(keep) == len(weighted):
        raise RuntimeError("no transformer linear layer found in the stage-2 graph (layout changed?)")
    q = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM,
                              ignored_scope=nncf.IgnoredScope(names=keep, validate=False))
    ov.save_model(q, str(dst), compress_to_fp16=False)


def _write_folder(folder: Path, make: Callable[[Path], object]) -> None:
    """Fill a folder beside its final place, then move it in (atomic for concurrent readers)."""
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        make(tmp)
        if folder.exists():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def release_file_pages(path: Path) -> int:
    """Drop this process's resident pages of every read-only mapping of the file ``path`` (Linux).

    For weights that a runtime has already repacked: the pages stay in the page cache and a
    later read maps them again, so nothing is lost. Returns the bytes advised (0 elsewhere).
    """
    import ctypes

    target = str(Path(path).resolve())
    try:
        with open("/proc/self/maps") as f:
            spans = [ln.split(maxsplit=5) for ln in f]
    except OSError:  # not Linux
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for parts in spans:
        if len(parts) == 6 and parts[5].strip() == target and "w" not in parts[1]:
            lo, hi = (int(v, 16) for v in parts[0].split("-"))
            if libc.madvise(lo, hi - lo, 4) == 0:  # MADV_DONTNEED
                released += hi - lo
    return released


def _default_cache_dir() -> Path:
    from ..weights.hub import cache_dir

    return Path(cache_dir()) / "openvino"
