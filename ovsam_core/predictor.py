"""The inference product: ``embed`` an image once, ``predict`` masks and names for many prompts.

Coordinates in and out are **original-image pixels** (x right, y down). The model frame
(long side 1024, padded square) is internal. Masks are returned at the original resolution.
"""
from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from . import __version__
from .embedding import EmbeddingLRU, EmbeddingMismatchError, EmbeddingSignature, EmbeddingStore, ImageEmbedding
from .images import LoadedImage, load_image
from .preprocess import FrameTransform, normalize_and_pad, resize_pil, upsample_masks
from .modeling.ovsam_head import PackedClassifier
from .prompts import Prompt, PromptError
from .vocabulary import (TextClassifier, VocabSource, base_mask_for, get_classifier, known_mask_for,
                         load_vocabulary, load_vocabulary_bundle)
from .weights.loader import LoadedModel, load_model
from .weights.paging import release_mapped_weights
from .runtime import bf16_advice, cpu_info, resolve_precision, validate_precision

if TYPE_CHECKING:  # pragma: no cover
    from .automatic import AutoResult, EverythingOptions

MODES = ("head", "fused")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PREPROCESSING = "pil-bilinear-longside"
#: Prompts decoded per model call (the decoder chunks internally; this bounds the low-res masks
#: and logits held at once).
DECODE_CHUNK = 128


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda, then mps, then cpu; other names are checked for availability."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu, cuda or mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' requested but Apple MPS is not available; use --device cpu")
    return torch.device(device)


@dataclass(frozen=True)
class ObjectPrediction:
    """The result for one prompt.

    Attributes:
        prompt: the prompt (box clipped to the image).
        mask: (H, W) bool at the original image resolution.
        label / label_index / score: the top-1 class (display name, vocabulary index, probability).
        top_k: ((label, score), ...) best first.
        top_k_indices: the vocabulary indices of :attr:`top_k` (same order), so that hosts map
            classes by index, not by display name (two classes may share one).
        bbox_xyxy: tight box of the mask (x0, y0, x1, y1), exclusive end, pixels; zeros if empty.
        area: mask pixels.
        quality: mask logit statistics: ``mean_logit`` (inside the mask) and ``stability``
            (area at logit > 1 over area at logit > -1, as in SAM).
        label_path: ancestors of the label in a hierarchical vocabulary (nearest first).
    """

    prompt: Prompt
    mask: np.ndarray
    label: str
    label_index: int
    score: float
    top_k: Tuple[Tuple[str, float], ...]
    bbox_xyxy: Tuple[int, int, int, int]
    area: int
    quality: Dict[str, float]
    label_path: Tuple[str, ...] = ()
    top_k_indices: Tuple[int, ...] = ()


@dataclass(frozen=True)
class Prediction:
    """All objects of one ``predict`` call, in prompt order."""

    objects: Tuple[ObjectPrediction, ...]
    image_size: Tuple[int, int]
    model: str
    mode: str
    vocabulary: str

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self):
        return iter(self.objects)


@dataclass(frozen=True)
class _ClassContext:
    packed: PackedClassifier
    names: Sequence[str]
    base: Optional[torch.Tensor]
    known: Optional[torch.Tensor]


def check_recognition_options(mode: Optional[str], top_k: int) -> None:
    """``ValueError`` for a recognition ``mode`` other than None (the model's), ``head`` or
    ``fused``, or ``top_k`` (alternatives kept per object) below 1."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose head or fused")
    if int(top_k) < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")


def _options(options, option_kw: Dict[str, object], cls):
    """``options`` updated by keyword fields; unknown keywords name the valid ones."""
    import dataclasses

    opts = options or cls()
    if option_kw:
        valid = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(option_kw) - valid)
        if bad:
            raise TypeError(f"unknown option(s) {', '.join(bad)}; valid: {', '.join(sorted(valid))}")
        opts = dataclasses.replace(opts, **option_kw)
    return opts


def _mask_box(mask: np.ndarray) -> Tuple[int, int, int, int]:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return (0, 0, 0, 0)
    return (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)


class Predictor:
    """Open-vocabulary segmentation of prompts, with embedding and classifier caches.

    Args:
        model: a registered model name or a :class:`LoadedModel`.
        weights_dir / weights: where the weights are (see :func:`ovsam_core.load_model`).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        dtype: image-encoder precision: ``auto`` (default: the fastest path that keeps the
            answers on this machine, see :mod:`ovsam_core.runtime.auto`), ``fp32`` (the parity
            reference), ``bf16`` (fast with AMX / some AVX512-BF16 CPUs and on GPUs, *slow* on
            AVX2-only CPUs; channels_last on CPU), ``fp16`` (GPU only), ``ov-fp32`` / ``ov-bf16`` /
            ``ov-mixed`` / ``ov-int8`` (OpenVINO on the CPU, ``ovsam[openvino]``; see
            :mod:`ovsam_core.runtime.auto`). :attr:`dtype` holds the resolved value.
        low_memory: drop the resident pages of the memory-mapped encoder weights after each
            encoder stage (see :mod:`ovsam_core.weights.paging`): peak memory is one stage's
            weights instead of all, for ~0.1-0.3 s more per encode. Default: on when the
            Predictor loads the model itself (its weights are then known to be unmodified).
        resident_encoder: keep the compiled OpenVINO encoder stages in memory between encodes
            (default; their trunk then computes its mid-size 3x3 convolutions by Winograd: ~0.6 s
            faster at 1024², ~0.35 GB more weights). ``False`` compiles each stage when an image is
            encoded and frees it before
            the next (peak: one stage's weights; ~1-2 s per stage and encode): for a process that
            encodes one image, such as ``ovsam predict``. No effect on the PyTorch paths.
        cache_bytes: size of the in-memory LRU of embeddings.
        store_dir: optional folder of embeddings on disk (reused across processes).
    """

    def __init__(
        self,
        model: Union[str, LoadedModel] = "ovsam-lvis",
        *,
        weights_dir=None,
        weights=None,
        device: str = "auto",
        dtype: str = "auto",
        cache_bytes: int = 2 * 1024 ** 3,
        store_dir=None,
        download: bool = True,
        progress: bool = True,
        low_memory: Optional[bool] = None,
        resident_encoder: bool = True,
    ) -> None:
        self.device = resolve_device(device)
        validate_precision(dtype, self.device)
        self.progress = progress
        if low_memory is None:
            low_memory = isinstance(model, str)
        self.low_memory = low_memory
        self.resident_encoder = resident_encoder
        if isinstance(model, str):
            model = load_model(model, weights_dir, weights=weights, download=download, progress=progress,
                               device=self.device, with_text="lazy")
        self.loaded = model
        self.loaded.model.to(self.device)
        if self.loaded.text_loaded:
            self.loaded.text_encoder.to(self.device)
        self.precision = resolve_precision(dtype, self.device, self.image_size)
        self.dtype = self.precision.name
        if dtype == "bf16" and self.device.type == "cpu" and not cpu_info().fast_bf16:
            warnings.warn(f"--dtype bf16: {bf16_advice()}; --dtype auto picks the fastest path", stacklevel=2)
        self._ov_encoder = None
        if self.dtype == "bf16" and self.device.type == "cpu":
            self.loaded.model.backbone.to(memory_format=torch.channels_last)
        self.cache = EmbeddingLRU(cache_bytes)
        self.store = EmbeddingStore(store_dir) if store_dir else None
        self.encoder_calls = 0
        self._classifiers: Dict[Tuple[str, ...], TextClassifier] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        return self.loaded.spec.name

    @property
    def model_key(self) -> Tuple[str, str, str, str]:
        return (self.name, self.loaded.weights_id, f"{PREPROCESSING}{self.image_size}", self.dtype)

    @property
    def image_size(self) -> int:
        return self.loaded.model.cfg.image_size

    def signature(self, image: LoadedImage) -> EmbeddingSignature:
        name, wid, pre, dt = self.model_key
        return EmbeddingSignature(image.digest, name, wid, pre, dt, __version__)

    # ------------------------------------------------------------------ image
    def embed(self, image, *, channels: Optional[Sequence[int]] = None) -> ImageEmbedding:
        """Encode an image (path, bytes, PIL image, array or :class:`LoadedImage`).

        Returns a cached embedding when the same image was embedded before by this model.
        """
        img = image if isinstance(image, LoadedImage) else load_image(image, channels=channels)
        if self.dtype.startswith("ov-"):
            self._openvino_encoder()  # may fall back to fp32 (auto only) before the signature is made
        sig = self.signature(img)
        key = sig.key
        emb = self.cache.get(key)
        if emb is None and self.store is not None:
            emb = self.store.get(sig)
        if emb is None:
            emb = self._encode(img, sig)
            if self.store is not None:
                self.store.put(emb)
        self.cache.put(key, emb)
        return emb

    def _encode(self, img: LoadedImage, sig: EmbeddingSignature) -> ImageEmbedding:
        from PIL import Image

        size = self.image_size
        rgb = resize_pil(Image.fromarray(img.rgb), size)
        frame = FrameTransform((img.height, img.width), rgb.shape[:2], size)
        x = normalize_and_pad(rgb, size).to(self.device)
        net = self.loaded.model
        release = release_mapped_weights if self.low_memory and self.device.type == "cpu" else None
        with torch.inference_mode():
            if self.dtype.startswith("ov-"):
                feats = self._openvino_encoder()(x)
            elif self.dtype == "fp32":
                feats = net.extract_features(x, after_stage=release)
            else:
                if self.device.type == "cpu":
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(self.device.type, dtype=DTYPES[self.dtype]):
                    feats = net.extract_features(x, after_stage=release)
                feats = type(feats)(embedding=feats.embedding.float(), fpn=tuple(t.float() for t in feats.fpn),
                                    c5=feats.c5.float().contiguous())
        self.encoder_calls += 1
        return ImageEmbedding(feats, frame, sig)

    def _openvino_encoder(self):
        """The OpenVINO encoder, converted/compiled on first use (cached on disk by signature).

        When ``auto`` chose it and it cannot be built, the Predictor falls back to fp32 PyTorch
        with a warning; an explicit ``ov-*`` request raises.
        """
        if self._ov_encoder is None:
            from .runtime import OpenVINOEncoder

            try:
                import sys

                say = (lambda msg: print(f"ovsam: {msg}", file=sys.stderr)) if self.progress else None
                self._ov_encoder = OpenVINOEncoder(self.loaded.model, f"{self.name}:{self.loaded.weights_id}",
                                                   self.dtype[len("ov-"):], notify=say,
                                                   resident=self.resident_encoder)
                if self.low_memory:  # a first conversion read the PyTorch encoder's weights
                    release_mapped_weights(self.loaded.model)
            except Exception as e:  # noqa: BLE001 - auto must never fail for an optional runtime
                if self.precision.reason == "requested":
                    raise
                warnings.warn(f"OpenVINO encoder unavailable ({e}); using PyTorch fp32", stacklevel=3)
                self.dtype = "fp32"
                return None
        return self._ov_encoder

    # ------------------------------------------------------------------ vocabulary
    def classifier(self, vocabulary: Optional[VocabSource] = None) -> TextClassifier:
        """The text classifier of a vocabulary (preset, list, file or ``vocab build`` folder)."""
        from pathlib import Path

        spec = self.loaded.spec
        source = spec.vocabulary if vocabulary is None else vocabulary
        if isinstance(source, (str, Path)) and Path(source).is_dir():
            # a `vocab build` folder: read once, again only when its files change
            d = Path(source).resolve()
            stats = [(f.name, f.stat()) for f in sorted(d.iterdir()) if f.is_file()]
            stamp = tuple((name, st.st_mtime_ns, st.st_size) for name, st in stats)
            key = ("folder", str(d), repr(stamp))
            with self._lock:
                clf = self._classifiers.get(key)
            if clf is None:
                vocab, weights, sig = load_vocabulary_bundle(d)
                clf = TextClassifier(vocab, weights.to(self.device), sig)
                self._remember(key, clf)
            return clf
        raw_key = None
        if isinstance(source, (list, tuple)) and all(isinstance(n, str) for n in source):
            raw_key = ("list", *source)  # skips re-parsing a big list on every call
            with self._lock:
                clf = self._classifiers.get(raw_key)
            if clf is not None:
                return clf
        vocab = load_vocabulary(source)
        key = (vocab.key, *vocab.names)
        with self._lock:
            clf = self._classifiers.get(key)
        if clf is not None:
            if raw_key is not None:
                self._remember(raw_key, clf)
            return clf
        shipped = self.loaded.classifier
        if (vocab.key == spec.vocabulary and shipped is not None and shipped.shape[0] == len(vocab)):
            clf = TextClassifier(vocab, shipped.to(self.device), f"shipped:{self.loaded.weights_id}")
        else:
            if not self.loaded.has_text:
                raise ValueError("this model was loaded without its text encoder; it can only use "
                                 f"the {spec.vocabulary!r} vocabulary it ships")
            clf = get_classifier(vocab, self.loaded.lazy_text_encoder(), self.loaded.weights_id,
                                 progress=self.progress)
            clf = TextClassifier(clf.vocabulary, clf.weights.to(self.device), clf.signature)
        self._remember(key, clf)
        if raw_key is not None:
            self._remember(raw_key, clf)
        return clf

    def _remember(self, key: Tuple[str, ...], clf: TextClassifier, limit: int = 16) -> None:
        with self._lock:
            if len(self._classifiers) >= limit:  # drop the oldest
                self._classifiers.pop(next(iter(self._classifiers)))
            self._classifiers[key] = clf

    # ------------------------------------------------------------------ prompts
    def predict(
        self,
        image,
        prompts: Union[Prompt, Sequence[Prompt]],
        vocabulary: Optional[VocabSource] = None,
        *,
        top_k: int = 5,
        mode: Optional[str] = None,
        clip_boxes: Optional[Sequence[Sequence[float]]] = None,
        quirk_q1: bool = False,
    ) -> Prediction:
        """Masks and names for ``prompts`` on an image or an :class:`ImageEmbedding`.

        Args:
            image: an :class:`ImageEmbedding` from :meth:`embed`, or anything :meth:`embed` takes.
            prompts: one :class:`Prompt` or a sequence (any number; batched internally).
            vocabulary: preset (``coco``, ``lvis``, ``imagenet21k``), list of names, file or
                ``ovsam vocab build`` folder; default the model's vocabulary.
            top_k: alternatives per object.
            mode: ``head`` (CLIP2SAM head, the demo) or ``fused`` (head + frozen CLIP, the
                paper's evaluation); default the model's mode.
            clip_boxes: ``fused`` only: one box per prompt (original-image pixels) for the
                frozen-CLIP RoI, e.g. ground-truth boxes. Default: the prompt's box, else the
                predicted mask's box.
            quirk_q1: ``fused`` only: reproduce upstream's evaluation exactly (quirk Q1): the
                ``clip_boxes`` (or prompt boxes) are applied **unscaled**, in original-image
                pixels, to the 1024-frame feature map. Only for reproducing paper numbers.
        Returns:
            :class:`Prediction`, one object per prompt in prompt order.
        """
        mode = mode or self.loaded.spec.mode
        check_recognition_options(mode, top_k)
        emb = image if isinstance(image, ImageEmbedding) else self.embed(image)
        self.check_embedding(emb)
        if isinstance(prompts, Prompt):
            prompts = [prompts]
        h, w = emb.frame.orig_hw
        prompts = [p.validated(h, w) for p in prompts]
        if clip_boxes is not None and len(clip_boxes) != len(prompts):
            raise ValueError(f"clip_boxes needs one box per prompt ({len(prompts)}), got {len(clip_boxes)}")
        if quirk_q1 and clip_boxes is None and any(p.box is None for p in prompts):
            raise ValueError("quirk_q1 needs a box per prompt: pass clip_boxes (e.g. ground-truth boxes)")
        cboxes = [tuple(map(float, b)) for b in clip_boxes] if clip_boxes is not None else [p.box for p in prompts]
        clf = self.classifier(vocabulary)
        ctx = self._class_context(clf, mode)
        results: List[Optional[ObjectPrediction]] = [None] * len(prompts)
        groups: Dict[Tuple[int, bool], List[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(p.kind, []).append(i)
        emb_dev = emb.to(self.device)
        for idx in groups.values():
            for s in range(0, len(idx), DECODE_CHUNK):
                chunk = idx[s:s + DECODE_CHUNK]
                objs = self._decode(emb_dev, [prompts[i] for i in chunk], clf, ctx, top_k, mode,
                                    [cboxes[i] for i in chunk], quirk_q1)
                for i, obj in zip(chunk, objs):
                    results[i] = obj
        return Prediction(tuple(results), (h, w), self.name, mode, clf.vocabulary.key)

    def check_embedding(self, emb: ImageEmbedding) -> None:
        """Raise :class:`EmbeddingMismatchError` unless ``emb`` was computed by this predictor's
        model, weights, pre-processing and dtype."""
        if emb.signature.model_key != self.model_key:
            raise EmbeddingMismatchError(
                f"this embedding was computed by {emb.signature.model!r} ({emb.signature.dtype}, "
                f"{emb.signature.preprocessing}); embed the image again with this predictor "
                f"({self.name}, {self.dtype})")

    # ------------------------------------------------------------------ prompt-free modes
    def segment_everything(self, image, vocabulary: Optional[VocabSource] = None, *,
                           options: Optional["EverythingOptions"] = None, mode: Optional[str] = None,
                           progress=None, **option_kw) -> "AutoResult":
        """Every object on ``image``, segmented and named (no prompt): a grid of point prompts
        decoded from one embedding, filtered by stability and class score, de-duplicated.

        See :mod:`ovsam_core.automatic` for the pipeline and the quality score. Keyword options
        (``points_per_side=32``, ``min_score=0.5``, ...) are :class:`EverythingOptions` fields.
        ``progress(done, total)`` is called between batches of grid prompts and may raise
        :class:`~ovsam_core.automatic.Cancelled` to stop.
        Returns an :class:`~ovsam_core.automatic.AutoResult` (masks as COCO RLE, original pixels).
        """
        from .automatic import EverythingOptions, segment_everything

        opts = _options(options, option_kw, EverythingOptions)
        return segment_everything(self, image, vocabulary, options=opts, mode=mode, progress=progress)

    def find(self, image, queries: Union[str, Sequence[str]], background: Optional[VocabSource] = None, *,
             options: Optional["EverythingOptions"] = None, mode: Optional[str] = None,
             progress=None, **option_kw) -> "AutoResult":
        """Every instance of the ``queries`` on ``image``; the queries compete with ``background``
        (default: the model's vocabulary). Each object's ``query`` says which it matched."""
        from .automatic import EverythingOptions, find

        opts = _options(options, option_kw, EverythingOptions)
        return find(self, image, [queries] if isinstance(queries, str) else list(queries), background,
                    options=opts, mode=mode, progress=progress)

    def _class_context(self, clf: TextClassifier, mode: str) -> _ClassContext:
        """Per-vocabulary data of a predict call: packed prototypes, names, fusion masks."""
        base = known = None
        if mode == "fused":
            base = base_mask_for(clf.vocabulary, self.loaded.spec.vocabulary).to(self.device)
            known = known_mask_for(clf.vocabulary)
            known = known.to(self.device) if known is not None else None
        return _ClassContext(clf.packed, clf.display_names, base, known)

    def _decode(self, emb: ImageEmbedding, prompts: List[Prompt], clf: TextClassifier, ctx: _ClassContext,
                top_k: int, mode: str, clip_boxes: List[Optional[Tuple[float, ...]]],
                quirk_q1: bool) -> List[ObjectPrediction]:
        net, frame, dev = self.loaded.model, emb.frame, self.device
        points = labels = boxes = None
        if prompts[0].points:
            points = frame.to_model(torch.tensor([p.points for p in prompts], dtype=torch.float32)).to(dev)
            labels = torch.tensor([p.labels for p in prompts], dtype=torch.float32, device=dev)
        if prompts[0].box is not None:
            boxes = frame.to_model(torch.tensor([p.box for p in prompts], dtype=torch.float32)).to(dev)
        with torch.inference_mode():
            out = net.decode(emb.features, points, labels, boxes)
            if mode == "head":
                logits = net.head_logits(out, ctx.packed)
            else:
                cb = out.roi_boxes.clone()
                for j, b in enumerate(clip_boxes):
                    if b is not None:
                        t = torch.tensor([b], dtype=torch.float32)
                        cb[j] = (t if quirk_q1 else frame.to_model(t))[0].to(dev)
                logits = net.fused_logits(emb.features, out, ctx.packed, cb, ctx.base, ctx.known)
            probs = torch.softmax(logits.float(), dim=-1)[:, :-1].cpu()
        k = min(top_k, probs.shape[1])
        top = torch.topk(probs, k, dim=-1)
        names = ctx.names
        objs = []
        for j, p in enumerate(prompts):
            with torch.inference_mode():
                logit = upsample_masks(out.mask_logits[j:j + 1].float(), frame)[0].cpu()
            mask = (torch.sigmoid(logit) > 0.5).numpy()
            area = int(mask.sum())
            hi, lo = int((logit > 1).sum()), int((logit > -1).sum())
            quality = {"mean_logit": float(logit[torch.from_numpy(mask)].mean()) if area else float("nan"),
                       "stability": hi / lo if lo else 0.0}
            ti = top.indices[j].tolist()
            ts = top.values[j].tolist()
            li = ti[0]
            path = tuple(names[a] for a in clf.vocabulary.ancestors(li))
            objs.append(ObjectPrediction(
                prompt=p, mask=mask, label=names[li], label_index=li, score=float(ts[0]),
                top_k=tuple((names[a], float(b)) for a, b in zip(ti, ts)), top_k_indices=tuple(int(a) for a in ti),
                bbox_xyxy=_mask_box(mask), area=area, quality=quality, label_path=path))
        return objs
