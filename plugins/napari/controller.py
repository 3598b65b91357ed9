"""The logic of the ovsam napari widget, without Qt or napari: prompts -> mask + name -> labels.

The widget (:mod:`ovsam_plugins.napari.widget`) only turns layer events into calls of
:class:`Controller` and its results back into layers. Everything else lives here and is tested
without a viewer:

* :class:`ImageSource` (:mod:`.image_source`): the pixels a prompt is answered from: one grey or RGB layer, or two to
  three grey layers shown as R, G, B; 8/16-bit, float; n-D stacks (answered plane by plane);
  numpy, dask, zarr or multiscale pyramids, of which only the region in use is ever read.
  Intensities are mapped to 8 bits through each layer's **contrast limits** (what you see is
  what the model gets), or as ``ovsam embed`` does (``intensity="auto"``, percentiles).
* :class:`Region`: the part of the plane that is embedded: the whole plane for images up to
  ``whole_max`` pixels a side, else a **region of interest** around the prompt (``roi_size``, or
  the box plus context). Regions larger than ``max_read`` pixels a side are read with a stride
  (from the coarsest fitting pyramid level when the image is multiscale). The embedding of the
  region is reused while new prompts stay inside it. Masks come back in **global** plane pixels.
* commits to a label volume (a numpy array, or a :class:`~.labels_store.ChunkedLabels` that is
  never dense for large images) with one record per object (class name, score, top-k) that
  becomes the Labels layer's ``features``; undo; export (:mod:`.export`).

Coordinates: napari data coordinates (row, col), a pixel's centre at integers. ovsam's prompts
use (x, y) with a pixel's centre at +0.5, so ``x = col + 0.5`` and ``y = row + 0.5``.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ovsam_core import mask_box, tight_crop
from ovsam_core import Region, plan_region

from .export import export_all
from .image_source import Channel, ImageSource, new_labels, source_from_layers
from .labels_store import max_label, plane_bbox, write_block
from .prompts import NEGATIVE, POSITIVE, PromptSet, prompts_from_layers
from .records import TILE, ObjectRecord, Preview, _Commit, _Part, features_table

__all__ = ["Settings", "Channel", "ImageSource", "Region", "PromptSet", "Preview", "ObjectRecord",
           "Controller", "new_labels", "source_from_layers", "prompts_from_layers", "POSITIVE", "NEGATIVE"]

REGIONS = ("auto", "whole", "roi")
INTENSITIES = ("contrast", "auto")


@dataclass
class Settings:
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
    dtype: str = "fp32"
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


class Controller:
    """Prompts -> preview -> commit -> undo -> export, for one image and one label volume.

    Args:
        settings: see :class:`Settings`.
        predictor: an :class:`ovsam_core.Predictor` to use (else created from ``settings`` on
            first use, see :meth:`load_model`).
    """

    def __init__(self, settings: Optional[Settings] = None, predictor=None) -> None:
        self.settings = settings or Settings()
        self.settings.validate()
        self._predictor = predictor
        self._own_predictor = predictor is None
        self.source: Optional[ImageSource] = None
        self.labels: Any = None
        self.objects: Dict[int, ObjectRecord] = {}
        self._history: List[_Commit] = []
        self.preview: Optional[Preview] = None
        self._region_emb: Optional[Tuple[Tuple[Region, str], Any]] = None
        self._loaded_embeddings: Dict[str, Any] = {}
        self._next_id = 1
        self._lock = threading.RLock()

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
                from ovsam_core import Predictor

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
            same = labels is self.labels
            self.source = source
            self.labels = labels
            self.preview = None
            self._region_emb = None
            if not same:
                self._history.clear()
                self.objects.clear()
                self._next_id = max_label(labels) + 1

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
        """The region embedded to answer ``prompts`` (:func:`ovsam_core.tiling.plan_region`; the
        cached one while it still fits)."""
        src, s = self._require_image(), self.settings
        whole = self.region_mode() == "whole"
        return plan_region(src.check_plane(prompts.plane), src.height, src.width,
                           (0.0, 0.0, 0.0, 0.0) if whole else prompts.extent(), whole=whole, roi_size=s.roi_size,
                           max_read=s.max_read, level_factors=src.level_factors(),
                           cached=self._region_emb[0][0] if self._region_emb else None)

    def embedding_for(self, region: Region):
        """The :class:`ovsam_core.ImageEmbedding` of a region (computed once, then cached)."""
        from ovsam_core import load_image

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
    def _paint(self, pv: Preview, lid: int) -> Tuple[List[_Part], int, Tuple[int, int, int, int]]:
        """Write ``pv``'s mask into the labels as ``lid`` (tile by tile); returns the undo parts,
        the painted area and its box (x0, y0, x1, y1)."""
        parts: List[_Part] = []
        area, box = 0, [math.inf, math.inf, -1, -1]          # y0, x0, y1, x1
        for ty in range(pv.y0, pv.y1, TILE):
            for tx in range(pv.x0, pv.x1, TILE):
                ty1, tx1 = min(ty + TILE, pv.y1), min(tx + TILE, pv.x1)
                m = pv.mask_tile(ty, ty1, tx, tx1)
                if not m.any():
                    continue
                old = plane_bbox(self.labels, pv.plane, ty, ty1, tx, tx1)
                painted = m if self.settings.paint_over else (m & (old == 0))
                if not painted.any():
                    continue
                parts.append(_Part(ty, tx, painted.shape, np.packbits(painted), old[painted], lid, pv.plane))
                old[painted] = lid
                write_block(self.labels, pv.plane, ty, tx, old)
                area += int(painted.sum())
                c0, r0, c1, r1 = mask_box(painted)
                box = [min(box[0], ty + r0), min(box[1], tx + c0), max(box[2], ty + r1), max(box[3], tx + c1)]
        return parts, area, (int(box[1]), int(box[0]), int(box[3]), int(box[2])) if parts else (0, 0, 0, 0)

    def commit(self, class_name: Optional[str] = None) -> ObjectRecord:
        """Write the preview into the labels with a new id and record its class.

        Args:
            class_name: None or the suggested name (accept), a top-k name (pick) or any text (type).
        """
        pv = self.preview
        if pv is None or pv.area == 0:
            raise ValueError("nothing to commit: add a point or a box that gives a non-empty mask")
        with self._lock:
            lid = self._next_id
            parts, area, box = self._paint(pv, lid)
            if not parts:
                raise ValueError("the object lies entirely under committed objects; "
                                 "undo them or turn on 'paint over'")
            name = (class_name or "").strip() or pv.label
            scores = dict(pv.top_k)
            choice = "suggested" if name == pv.label else ("top-k" if name in scores else "typed")
            rec = ObjectRecord(
                label_id=lid, class_name=name, score=float(scores.get(name, math.nan)),
                suggested_class=pv.label, suggested_score=pv.score, choice=choice, top_k=pv.top_k,
                area=area, bbox_xyxy=box, plane=pv.plane, prompt=pv.prompts.to_json())
            self.objects[lid] = rec
            self._history.append(_Commit([rec], parts))
            self._next_id = lid + 1
            self.preview = None
            return rec

    # ---------------------------------------------------------------- pre-labelling (no prompts)
    def auto_region(self, plane: Sequence[int] = (), view: Optional[Tuple[float, float, float, float]] = None) -> Region:
        """The region "Segment all" / "Find" label: the whole plane (whole-plane mode), else a
        square around ``view`` ((y0, x0, y1, x1) plane pixels, e.g. the visible area) of at least
        ``roi_size`` a side, read with a stride beyond ``max_read``."""
        src, s = self._require_image(), self.settings
        plane = src.check_plane(plane)
        if self.region_mode() == "whole" or view is None:
            view = (0.0, 0.0, float(src.height), float(src.width)) if self.region_mode() == "whole" else view
            if view is None:
                raise ValueError("a large image is labelled region by region: give the visible area")
        y0, x0, y1, x1 = view
        cy, cx, third = (y0 + y1) / 2, (x0 + x1) / 2, max(y1 - y0, x1 - x0) / 3  # plan_region adds 50 % context
        return plan_region(plane, src.height, src.width, (cy - third, cx - third, cy + third, cx + third),
                           whole=self.region_mode() == "whole", roi_size=s.roi_size, max_read=s.max_read,
                           level_factors=src.level_factors())

    def prelabel(self, auto, classes: Optional[Sequence[Any]] = None, plane: Sequence[int] = (),
                 view: Optional[Tuple[float, float, float, float]] = None,
                 progress: Optional[Callable[[int, int], None]] = None) -> List[Preview]:
        """Objects of :func:`ovsam_core.prelabel` (``auto``: :class:`ovsam_core.AutoSettings`;
        ``classes``: find mode's labels) on :meth:`auto_region`, as previews in plane pixels (best
        first). Nothing is written: :meth:`commit_all` does that. ``progress`` may raise
        :class:`ovsam_core.Cancelled`."""
        from ovsam_core import load_image, prelabel

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

    def _covered(self, pv: Preview) -> float:
        """Fraction of ``pv``'s mask already labelled."""
        hit = sum(int((pv.mask_tile(ty, min(ty + TILE, pv.y1), tx, min(tx + TILE, pv.x1))
                       & (plane_bbox(self.labels, pv.plane, ty, min(ty + TILE, pv.y1), tx, min(tx + TILE, pv.x1)) != 0)).sum())
                  for ty in range(pv.y0, pv.y1, TILE) for tx in range(pv.x0, pv.x1, TILE))
        return hit / max(pv.area, 1)

    def commit_all(self, previews: Sequence[Preview]) -> List[ObjectRecord]:
        """Write objects (best first) as ONE undo step; returns their records. An object at least
        half labelled already (by an earlier commit or a better object) is skipped; the others
        fill only unlabelled pixels unless ``paint_over``."""
        with self._lock:
            recs: List[ObjectRecord] = []
            parts: List[_Part] = []
            for pv in previews:
                if self._covered(pv) >= 0.5:
                    continue
                lid = self._next_id
                p, area, box = self._paint(pv, lid)
                if not p:
                    continue
                rec = ObjectRecord(label_id=lid, class_name=pv.label, score=pv.score, suggested_class=pv.label,
                                   suggested_score=pv.score, choice=pv.source, top_k=pv.top_k, area=area,
                                   bbox_xyxy=box, plane=pv.plane, prompt=pv.prompts.to_json())
                self.objects[lid] = rec
                recs.append(rec)
                parts += p
                self._next_id = lid + 1
            if recs:
                self._history.append(_Commit(recs, parts))
            return recs

    def undo(self) -> List[ObjectRecord]:
        """Undo the last commit (one object, or all objects of one pre-labelling run): its pixels
        get their previous values back. Returns the removed records (empty: nothing to undo)."""
        with self._lock:
            if not self._history:
                return []
            c = self._history.pop()
            for part in reversed(c.parts):
                h, w = part.shape
                painted = part.painted_mask()
                cur = plane_bbox(self.labels, part.plane, part.y0, part.y0 + h, part.x0, part.x0 + w)
                restore = painted & (cur == part.label_id)
                vals = np.zeros_like(cur)
                vals[painted] = part.old
                cur[restore] = vals[restore]
                write_block(self.labels, part.plane, part.y0, part.x0, cur)
            for rec in c.records:
                self.objects.pop(rec.label_id, None)
            if c.records and c.records[-1].label_id == self._next_id - 1:
                self._next_id = c.records[0].label_id
            return list(c.records)

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    def rename(self, label_id: int, class_name: str) -> ObjectRecord:
        """Change the class of a committed object."""
        rec = self.objects[label_id]
        name = class_name.strip()
        if not name:
            raise ValueError("a class name cannot be empty")
        scores = dict(rec.top_k)
        choice = "suggested" if name == rec.suggested_class else ("top-k" if name in scores else "typed")
        new = replace(rec, class_name=name, score=float(scores.get(name, math.nan)), choice=choice)
        self.objects[label_id] = new
        for c in self._history:
            c.records = [new if r.label_id == label_id else r for r in c.records]
        return new

    def features(self) -> Dict[str, np.ndarray]:
        """The Labels layer's ``features`` table: one row per object, keyed by ``index``."""
        return features_table(self.objects.values())

    # ---------------------------------------------------------------- embeddings on disk
    def save_embedding(self, path: Union[str, Path], plane: Sequence[int] = ()) -> Path:
        """Save the whole-plane embedding (a safetensors file with its signature)."""
        return Path(self.embed_plane(plane).save(path))

    def load_embedding(self, path: Union[str, Path], plane: Sequence[int] = ()):
        """Use a saved embedding (``ImageEmbedding.save`` / ``ovsam embed``) for this image.

        Refuses embeddings of another model (signature) or of another image (content digest of
        the plane under either intensity mapping; switches to ``auto`` when that one matches).
        """
        from ovsam_core import EmbeddingMismatchError, ImageEmbedding, load_image

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
