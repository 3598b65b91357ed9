"""Interactive annotation of one image, host-neutral: prompts -> mask + name -> label volume.

A viewer's adapter (napari's dock widget) only turns its events into calls of :class:`Annotator`
and its results back into layers; everything else lives here and in the modules it uses:

* :class:`~ovsam_core.hosts.planesource.ImageSource`: the pixels answered from (grey / RGB / 2-3
  channels, n-D stacks plane by plane, numpy / dask / zarr / pyramids read region by region);
* :func:`~ovsam_core.hosts.tiling.plan_region`: the whole plane up to ``whole_max`` pixels a side, else
  a region of interest around the prompt, strided beyond ``max_read``; its embedding is reused
  while prompts stay inside it. Masks come back in **global** plane pixels;
* :class:`~ovsam_core.hosts.labelbook.LabelBook`: commits into the label volume (numpy, or chunked for
  large images), one record per object, undo; pre-labelling (:meth:`Annotator.prelabel`, the
  core's :func:`~ovsam_core.hosts.prelabel.prelabel`) commits all its objects as ONE undo step;
* :mod:`~ovsam_core.hosts.labelexport`: label TIFF, CSV class table, COCO JSON.

Coordinates: data coordinates (row, col), a pixel's centre at integers. ovsam's prompts use
(x, y) with a pixel's centre at +0.5, so ``x = col + 0.5`` and ``y = row + 0.5``.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .labelbook import LabelBook, ObjectRecord, choice_of
from .labelexport import export_all
from .labelvolume import new_labels
from ..masks import tight_crop
from .planeprompts import Preview, PromptSet
from .planesource import ImageSource
from .tiling import Region, plan_region

__all__ = ["AnnotatorSettings", "Annotator"]

REGIONS = ("auto", "whole", "roi")
INTENSITIES = ("contrast", "auto")


@dataclass
class AnnotatorSettings:
    """What the widget's controls set.

    Attributes:
        model / weights_dir / device / dtype: passed to :class:`ovsam_core.Predictor`.
        embeddings_dir: a folder of embeddings (``ovsam embed --out DIR``): read when an image
            matches, and new embeddings are written there.
        vocabulary: preset name, list of names, file or ``vocab build`` folder; None = the model's.
        mode: recognition ``head`` or ``fused``; None = the model's.
        top_k: alternatives shown per object.
        region: ``auto`` (whole plane up to ``whole_max``, else ROI), ``whole`` or ``roi``.
        roi_size: side of the region of interest around a point prompt (level-0 pixels).
        whole_max: largest plane side that ``auto`` embeds whole.
        max_read: largest side read for one embedding; larger regions are strided.
        intensity: ``contrast`` (the layers' contrast limits) or ``auto`` (as ``ovsam embed``).
        paint_over: a new object replaces committed pixels (else it only fills background).
    """

    model: str = "ovsam-lvis"
    weights_dir: Optional[str] = None
    device: str = "auto"
    dtype: str = "auto"
    embeddings_dir: Optional[str] = None
    vocabulary: Any = None
    mode: Optional[str] = None
    top_k: int = 5
    region: str = "auto"
    roi_size: int = 1024
    whole_max: int = 2048
    max_read: int = 2048
    intensity: str = "contrast"
    paint_over: bool = False

    def validate(self) -> None:
        if self.region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}, got {self.region!r}")
        if self.intensity not in INTENSITIES:
            raise ValueError(f"intensity must be one of {INTENSITIES}, got {self.intensity!r}")
        if self.mode not in (None, "head", "fused"):
            raise ValueError(f"mode must be head, fused or None, got {self.mode!r}")
        if self.roi_size < 64 or self.max_read < 64 or self.whole_max < 64:
            raise ValueError("roi_size, max_read and whole_max must be at least 64 pixels")
        if self.top_k < 1:
            raise ValueError("top_k must be at least 1")


class Annotator:
    """Prompts -> preview -> commit -> undo -> export, for one image and one label volume.

    Args:
        settings: see :class:`AnnotatorSettings`.
        predictor: an :class:`ovsam_core.Predictor` to use (else created from ``settings`` on
            first use, see :meth:`load_model`).
    """

    def __init__(self, settings: Optional[AnnotatorSettings] = None, predictor=None) -> None:
        self.settings = settings or AnnotatorSettings()
        self.settings.validate()
        self._predictor = predictor
        self._own_predictor = predictor is None
        self.source: Optional[ImageSource] = None
        self.book: Optional[LabelBook] = None
        self.preview: Optional[Preview] = None
        self._region_emb: Optional[Tuple[Tuple[Region, str], Any]] = None
        self._loaded_embeddings: Dict[str, Any] = {}
        self._lock = threading.RLock()

    @property
    def labels(self):
        """The label volume in use (None before :meth:`set_image`)."""
        return None if self.book is None else self.book.labels

    @labels.setter
    def labels(self, data) -> None:   # the same volume as a viewer wraps it (e.g. napari's layer data)
        self.book.labels = data

    @property
    def objects(self) -> Dict[int, ObjectRecord]:
        return {} if self.book is None else self.book.objects

    # ---------------------------------------------------------------- model
    def configure(self, **changes) -> None:
        """Change settings; drops the model or the cached region when they depend on them."""
        new = replace(self.settings, **changes)
        new.validate()
        old = self.settings
        self.settings = new
        if any(getattr(old, k) != getattr(new, k) for k in ("model", "weights_dir", "device", "dtype", "embeddings_dir")):
            if self._own_predictor:
                self._predictor = None
            self._region_emb = None
            self.preview = None
        if any(getattr(old, k) != getattr(new, k) for k in ("region", "roi_size", "whole_max", "max_read", "intensity")):
            self._region_emb = None

    @property
    def model_loaded(self) -> bool:
        return self._predictor is not None

    def load_model(self):
        """The :class:`ovsam_core.Predictor` (created on first use; downloads weights if needed)."""
        with self._lock:
            if self._predictor is None:
                from ..predictor import Predictor

                s = self.settings
                self._predictor = Predictor(s.model, weights_dir=s.weights_dir, device=s.device, dtype=s.dtype,
                                            store_dir=s.embeddings_dir, progress=False,
                                            cache_bytes=1024 ** 3)
                self._own_predictor = True
            return self._predictor

    @property
    def predictor(self):
        return self.load_model()

    # ---------------------------------------------------------------- image and labels
    def set_image(self, source: ImageSource, labels=None) -> None:
        """Use ``source``; ``labels`` (same shape, e.g. an existing layer's data) or a new volume.

        Passing the label volume in use keeps its objects (class names, undo history).
        """
        if labels is None:
            labels = new_labels(source.shape)
        if tuple(labels.shape) != tuple(source.shape):
            raise ValueError(f"labels of shape {tuple(labels.shape)} do not match the image's {source.shape}")
        with self._lock:
            self.source = source
            self.preview = None
            self._region_emb = None
            if self.book is None or labels is not self.book.labels:
                self.book = LabelBook(labels)

    def _require_image(self) -> ImageSource:
        if self.source is None:
            raise ValueError("no image: choose an image layer first")
        return self.source

    def region_mode(self) -> str:
        s, src = self.settings, self._require_image()
        if s.region != "auto":
            return s.region
        return "whole" if max(src.height, src.width) <= s.whole_max else "roi"

    def region_for(self, prompts: PromptSet) -> Region:
        """The region embedded to answer ``prompts`` (:func:`ovsam_core.hosts.tiling.plan_region`; the
        cached one while it still fits)."""
        src, s = self._require_image(), self.settings
        whole = self.region_mode() == "whole"
        return plan_region(src.check_plane(prompts.plane), src.height, src.width,
                           (0.0, 0.0, 0.0, 0.0) if whole else prompts.extent(), whole=whole, roi_size=s.roi_size,
                           max_read=s.max_read, level_factors=src.level_factors(),
                           cached=self._region_emb[0][0] if self._region_emb else None)

    def embedding_for(self, region: Region):
        """The :class:`ovsam_core.ImageEmbedding` of a region (computed once, then cached)."""
        from ..images import load_image

        key = (region, self.settings.intensity)
        with self._lock:
            if self._region_emb is not None and self._region_emb[0] == key:
                return self._region_emb[1]
        predictor = self.predictor
        img = load_image(self._require_image().read_rgb(region, self.settings.intensity))
        emb = self._loaded_embeddings.get(predictor.signature(img).key)
        if emb is None:
            emb = predictor.embed(img)
        with self._lock:
            self._region_emb = (key, emb)
        return emb

    def embed_plane(self, plane: Sequence[int] = ()):
        """Embed the whole plane now (e.g. in the background before the first click)."""
        src = self._require_image()
        mode = self.region_mode()
        if mode != "whole":
            raise ValueError("this image is answered region by region (ROI mode); embeddings are computed per prompt")
        return self.embedding_for(self.region_for(PromptSet(src.check_plane(plane), ((0.0, 0.0, 1),))))

    # ---------------------------------------------------------------- prediction
    def predict(self, prompts: PromptSet) -> Optional[Preview]:
        """Mask, name and top-k for one object's prompt; becomes :attr:`preview`."""
        if prompts.is_empty():
            self.preview = None
            return None
        region = self.region_for(prompts)
        emb = self.embedding_for(region)
        s = self.settings
        pred = self.predictor.predict(emb, prompts.to_prompt(region), s.vocabulary, top_k=s.top_k, mode=s.mode)
        obj = pred.objects[0]
        crop, r0, c0 = tight_crop(obj.mask)
        pv = Preview(prompts, region, crop, region.y0 + r0 * region.step, region.x0 + c0 * region.step, obj.label, float(obj.score), tuple(obj.top_k),
                     tuple(obj.label_path), dict(obj.quality))
        self.preview = pv
        return pv

    def clear_preview(self) -> None:
        self.preview = None

    # ---------------------------------------------------------------- commits
    def commit(self, class_name: Optional[str] = None) -> ObjectRecord:
        """Write the preview into the labels with a new id and record its class.

        Args:
            class_name: None or the suggested name (accept), a top-k name (pick) or any text (type).
        """
        pv = self.preview
        if pv is None or pv.area == 0:
            raise ValueError("nothing to commit: add a point or a box that gives a non-empty mask")
        name = (class_name or "").strip() or pv.label
        scores = dict(pv.top_k)

        def record(pv: Preview, lid: int, area: int, box) -> ObjectRecord:
            return ObjectRecord(label_id=lid, class_name=name, score=float(scores.get(name, math.nan)),
                                suggested_class=pv.label, suggested_score=pv.score,
                                choice=choice_of(name, pv.label, pv.top_k), top_k=pv.top_k, area=area,
                                bbox_xyxy=box, plane=pv.plane, prompt=pv.prompts.to_json())

        recs = self.book.commit([pv], record, paint_over=self.settings.paint_over)
        if not recs:
            raise ValueError("the object lies entirely under committed objects; undo them or turn on 'paint over'")
        self.preview = None
        return recs[0]

    # ---------------------------------------------------------------- pre-labelling (no prompts)
    def auto_region(self, plane: Sequence[int] = (), view: Optional[Tuple[float, float, float, float]] = None) -> Region:
        """The region "Segment all" / "Find" label: the whole plane in whole-plane mode (or
        without ``view``), else a square around ``view`` ((y0, x0, y1, x1) plane pixels, e.g. the
        visible area) of at least ``roi_size`` a side; read with a stride beyond ``max_read``."""
        src, s = self._require_image(), self.settings
        plane = src.check_plane(plane)
        whole = self.region_mode() == "whole" or view is None
        y0, x0, y1, x1 = (0.0, 0.0, float(src.height), float(src.width)) if whole else view
        cy, cx, third = (y0 + y1) / 2, (x0 + x1) / 2, max(y1 - y0, x1 - x0) / 3  # plan_region adds 50 % context
        return plan_region(plane, src.height, src.width, (cy - third, cx - third, cy + third, cx + third),
                           whole=whole, roi_size=s.roi_size, max_read=s.max_read, level_factors=src.level_factors())

    def prelabel(self, auto, classes: Optional[Sequence[Any]] = None, plane: Sequence[int] = (),
                 view: Optional[Tuple[float, float, float, float]] = None,
                 progress: Optional[Callable[[int, int], None]] = None) -> List[Preview]:
        """Objects of :func:`ovsam_core.hosts.prelabel` (``auto``: :class:`ovsam_core.AutoSettings`;
        ``classes``: find mode's labels) on :meth:`auto_region`, as previews in plane pixels (best
        first). Nothing is written: :meth:`commit_all` does that. ``progress`` may raise
        :class:`ovsam_core.Cancelled`."""
        from ..images import load_image
        from .prelabel import prelabel

        region = self.auto_region(plane, view)
        img = load_image(self._require_image().read_rgb(region, self.settings.intensity))
        res = prelabel(self.predictor, img, auto, classes, vocabulary=self.settings.vocabulary, progress=progress)
        out = []
        for o in res.objects:
            crop, r0, c0 = tight_crop(o.mask)
            if not crop.size:
                continue
            x, y = o.point   # region-read pixels -> plane data coordinates (row, col)
            pts = ((region.y0 + y * region.step - 0.5, region.x0 + x * region.step - 0.5, 1),)
            out.append(Preview(PromptSet(region.plane, pts), region, crop, region.y0 + r0 * region.step,
                               region.x0 + c0 * region.step, o.label, float(o.score), tuple(o.object.top_k),
                               quality=dict(o.object.quality), source=auto.mode))
        return out

    def commit_all(self, previews: Sequence[Preview]) -> List[ObjectRecord]:
        """Write pre-labelled objects (best first) as ONE undo step; returns their records. An
        object at least half labelled already (earlier commits, better objects) is skipped; the
        others fill unlabelled pixels only, unless ``paint_over``."""
        def record(pv: Preview, lid: int, area: int, box) -> ObjectRecord:
            return ObjectRecord(label_id=lid, class_name=pv.label, score=pv.score, suggested_class=pv.label,
                                suggested_score=pv.score, choice=pv.source, top_k=pv.top_k, area=area,
                                bbox_xyxy=box, plane=pv.plane, prompt=pv.prompts.to_json())

        return self.book.commit(previews, record, paint_over=self.settings.paint_over, skip_covered=0.5)

    def undo(self) -> List[ObjectRecord]:
        """Undo the last commit (one object, or all objects of one pre-labelling run); returns
        the removed records (empty: nothing to undo)."""
        return self.book.undo() if self.book is not None else []

    @property
    def can_undo(self) -> bool:
        return self.book is not None and self.book.can_undo

    def rename(self, label_id: int, class_name: str) -> ObjectRecord:
        """Change the class of a committed object."""
        return self.book.rename(label_id, class_name)

    def features(self) -> Dict[str, np.ndarray]:
        """The Labels layer's ``features`` table: one row per object, keyed by ``index``."""
        return self.book.features()

    # ---------------------------------------------------------------- embeddings on disk
    def save_embedding(self, path: Union[str, Path], plane: Sequence[int] = ()) -> Path:
        """Save the whole-plane embedding (a safetensors file with its signature)."""
        return Path(self.embed_plane(plane).save(path))

    def load_embedding(self, path: Union[str, Path], plane: Sequence[int] = ()):
        """Use a saved embedding (``ImageEmbedding.save`` / ``ovsam embed``) for this image.

        Refuses embeddings of another model (signature) or of another image (content digest of
        the plane under either intensity mapping; switches to ``auto`` when that one matches).
        """
        from ..embedding import EmbeddingMismatchError, ImageEmbedding
        from ..images import load_image

        predictor = self.predictor
        emb = ImageEmbedding.load(path, expect=predictor.model_key)
        src = self._require_image()
        plane = src.check_plane(plane)
        if tuple(emb.image_size) != (src.height, src.width):
            raise EmbeddingMismatchError(f"{path} is the embedding of a {emb.image_size[1]}x{emb.image_size[0]} "
                                         f"image, not of this {src.width}x{src.height} one")
        whole = Region(plane, 0, src.height, 0, src.width)
        for intensity in (self.settings.intensity, *[i for i in INTENSITIES if i != self.settings.intensity]):
            if load_image(src.read_rgb(whole, intensity)).digest == emb.signature.image_digest:
                self._loaded_embeddings[emb.signature.key] = emb
                if intensity != self.settings.intensity or self.region_mode() != "whole":
                    self.configure(intensity=intensity, region="whole")
                return emb
        raise EmbeddingMismatchError(f"{path} was computed from another image (its pixels differ from this plane)")

    # ---------------------------------------------------------------- export
    def export(self, out_dir: Union[str, Path], name: Optional[str] = None,
               progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, Path]:
        """Write ``<name>_labels.tif``, ``<name>_classes.csv`` and ``<name>_coco.json``."""
        return export_all(self.labels, self.objects, self._require_image(), out_dir, name or _safe_name(self._require_image().name), progress=progress)


def _safe_name(text: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip("._")
    return keep or "ovsam"
