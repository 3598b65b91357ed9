"""The logic of the ovsam napari widget, without Qt or napari: prompts -> mask + name -> labels.

The widget (:mod:`ovsam_plugins.napari.widget`) only turns layer events into calls of
:class:`Controller` and its results back into layers. Everything else lives here and is tested
without a viewer:

* :class:`ImageSource`: the pixels a prompt is answered from: one grey or RGB layer, or two to
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

import json
import math
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .labels_store import ChunkedLabels, max_label, plane_bbox, write_block

__all__ = ["Settings", "Channel", "ImageSource", "Region", "PromptSet", "Preview", "ObjectRecord",
           "Controller", "new_labels", "source_from_layers", "prompts_from_layers", "POSITIVE", "NEGATIVE"]

POSITIVE, NEGATIVE = "positive", "negative"
#: Label volumes with more pixels than this are chunked (never dense), e.g. 8192 x 8192.
DENSE_MAX = 1 << 26
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


# ------------------------------------------------------------------------------------------
# image input


@dataclass
class Channel:
    """One image layer: its pyramid levels (level 0 first), display contrast and RGB-ness."""

    levels: Sequence[Any]
    contrast_limits: Optional[Tuple[float, float]] = None
    rgb: bool = False
    name: str = "image"


def _dtype_range(dtype: np.dtype) -> Optional[Tuple[float, float]]:
    if dtype == np.uint8:
        return (0.0, 255.0)
    if dtype.kind == "b":
        return (0.0, 1.0)
    return None


def _to_uint8(x: np.ndarray, limits: Optional[Tuple[float, float]]) -> np.ndarray:
    """Map [lo, hi] to 0..255 (clipped); NaN -> 0. Without limits: the block's finite min/max."""
    if x.dtype == np.uint8 and (limits is None or tuple(limits) == (0.0, 255.0)):
        return x
    if limits is None:
        limits = _dtype_range(x.dtype)
    xf = x.astype(np.float32)
    finite = np.isfinite(xf)
    if limits is None:
        vals = xf[finite]
        limits = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
    lo, hi = float(limits[0]), float(limits[1])
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    xf -= lo
    xf *= scale
    np.clip(xf, 0, 255, out=xf)
    xf[~finite] = 0
    return np.rint(xf).astype(np.uint8)


class ImageSource:
    """The image a prompt is answered from (see the module doc).

    Args:
        channels: one :class:`Channel` (grey or RGB) or two to three grey channels (R, G, B).
        name: shown in exports (COCO ``file_name``).
    """

    def __init__(self, channels: Sequence[Channel], name: Optional[str] = None) -> None:
        channels = list(channels)
        if not channels:
            raise ValueError("choose an image layer")
        if len(channels) > 3:
            raise ValueError(f"choose at most three image layers (R, G, B), got {len(channels)}")
        if len(channels) > 1 and any(c.rgb for c in channels):
            raise ValueError("an RGB layer cannot be combined with other layers; choose it alone")
        self.channels = channels
        shapes = {self._plane_shape(c) for c in channels}
        if len(shapes) != 1:
            raise ValueError(f"the chosen layers have different shapes {sorted(shapes)}; choose layers of one shape")
        self.shape: Tuple[int, ...] = shapes.pop()
        if len(self.shape) < 2:
            raise ValueError(f"an image needs at least 2 dimensions, got shape {self.shape}")
        self.name = name or channels[0].name

    @staticmethod
    def _plane_shape(c: Channel) -> Tuple[int, ...]:
        s = tuple(int(v) for v in c.levels[0].shape)
        if c.rgb:
            if s[-1] not in (3, 4):
                raise ValueError(f"an RGB layer needs 3 or 4 channels last, got shape {s}")
            s = s[:-1]
        return s

    @classmethod
    def from_array(cls, data, contrast_limits=None, rgb: bool = False, name: str = "image") -> "ImageSource":
        """One array (or a list of pyramid levels, level 0 first)."""
        levels = list(data) if isinstance(data, (list, tuple)) else [data]
        return cls([Channel(levels, contrast_limits, rgb, name)], name)

    @property
    def height(self) -> int:
        return self.shape[-2]

    @property
    def width(self) -> int:
        return self.shape[-1]

    @property
    def lead_shape(self) -> Tuple[int, ...]:
        return self.shape[:-2]

    @property
    def is_multiscale(self) -> bool:
        return all(len(c.levels) > 1 for c in self.channels)

    def level_factors(self) -> List[int]:
        """Integer downsampling factor of each level usable for reading (0 = unusable)."""
        n = min(len(c.levels) for c in self.channels)
        out = []
        for i in range(n):
            facs = set()
            for c in self.channels:
                s = tuple(int(v) for v in c.levels[i].shape)
                s = s[:-1] if c.rgb else s
                if s[:-2] != self.lead_shape:
                    facs.add(0)
                    continue
                fy, fx = self.height / s[-2], self.width / s[-1]
                f = int(round(fy))
                ok = f >= 1 and abs(fy - f) * s[-2] <= f and abs(fx - f) * s[-1] <= f
                facs.add(f if ok else 0)
            out.append(facs.pop() if len(facs) == 1 else 0)
        return out

    def check_plane(self, plane: Sequence[int]) -> Tuple[int, ...]:
        plane = tuple(int(p) for p in plane)
        if len(plane) != len(self.lead_shape):
            raise ValueError(f"plane index {plane} does not match the image's {len(self.lead_shape)} leading axes")
        for p, s in zip(plane, self.lead_shape):
            if not 0 <= p < s:
                raise ValueError(f"plane {plane} is outside the image's leading shape {self.lead_shape}")
        return plane

    def read_raw(self, region: "Region") -> List[np.ndarray]:
        """Each channel's pixels of the region, (h, w) or (h, w, 3|4), as stored."""
        out = []
        f = self.level_factors()[region.level] if region.level else 1
        for c in self.channels:
            lvl = c.levels[region.level]
            lh, lw = (lvl.shape[-3], lvl.shape[-2]) if c.rgb else (lvl.shape[-2], lvl.shape[-1])
            s = region.level_stride
            ys = slice(region.y0 // f, min(lh, -(-region.y1 // f)), s)
            xs = slice(region.x0 // f, min(lw, -(-region.x1 // f)), s)
            key = tuple(region.plane) + (ys, xs) + ((slice(None),) if c.rgb else ())
            out.append(np.asarray(lvl[key]))
        return out

    def read_rgb(self, region: "Region", intensity: str = "contrast") -> np.ndarray:
        """The region as (h, w, 3) uint8, the model's input."""
        raw = self.read_raw(region)
        if intensity == "auto":
            from ovsam_core import load_image

            if len(raw) == 1:
                arr = raw[0][..., :3] if self.channels[0].rgb else raw[0]
                return np.array(load_image(arr).rgb)
            stack = np.stack([r.astype(np.result_type(*raw)) for r in raw], axis=-1)
            return np.array(load_image(stack, channel_axis=-1, channels=list(range(len(raw)))).rgb)
        planes = []
        for c, r in zip(self.channels, raw):
            lim = tuple(c.contrast_limits) if c.contrast_limits is not None else None
            if c.rgb:
                return np.ascontiguousarray(_to_uint8(r[..., :3], lim))
            planes.append(_to_uint8(r, lim))
        if len(planes) == 1:
            planes = planes * 3
        elif len(planes) == 2:
            planes.append(np.zeros_like(planes[0]))
        return np.ascontiguousarray(np.stack(planes, axis=-1))


def source_from_layers(layers: Sequence[Any]) -> ImageSource:
    """An :class:`ImageSource` from napari Image layers (duck-typed; napari is not imported)."""
    chans = []
    for layer in layers:
        data = layer.data
        levels = list(data) if getattr(layer, "multiscale", False) else [data]
        chans.append(Channel(levels, tuple(layer.contrast_limits), bool(getattr(layer, "rgb", False)),
                             str(layer.name)))
    return ImageSource(chans, chans[0].name if chans else None)


def new_labels(shape: Sequence[int], dense_max: int = DENSE_MAX):
    """An empty label volume: numpy for small shapes, :class:`ChunkedLabels` beyond ``dense_max``."""
    shape = tuple(int(s) for s in shape)
    if math.prod(shape) <= dense_max:
        return np.zeros(shape, np.int32)
    return ChunkedLabels(shape, np.int32)


# ------------------------------------------------------------------------------------------
# prompts and regions


@dataclass(frozen=True)
class Region:
    """Part of one plane, in level-0 pixels [y0, y1) x [x0, x1), read every ``step`` pixels
    (from pyramid ``level`` with ``level_stride``)."""

    plane: Tuple[int, ...]
    y0: int
    y1: int
    x0: int
    x1: int
    step: int = 1
    level: int = 0
    level_stride: int = 1

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    def contains(self, y0: float, x0: float, y1: float, x1: float, margin: float = 0.0) -> bool:
        return (y0 >= self.y0 + margin and x0 >= self.x0 + margin
                and y1 <= self.y1 - margin and x1 <= self.x1 - margin)


@dataclass(frozen=True)
class PromptSet:
    """One object's prompt on one plane, in napari data coordinates.

    Attributes:
        plane: indices of the leading (non-spatial) axes, ``()`` for 2-D images.
        points: ((row, col, label), ...), label 1 positive, 0 negative.
        box: (row0, col0, row1, col1) or None.
    """

    plane: Tuple[int, ...] = ()
    points: Tuple[Tuple[float, float, int], ...] = ()
    box: Optional[Tuple[float, float, float, float]] = None

    def is_empty(self) -> bool:
        return not self.points and self.box is None

    def extent(self) -> Tuple[float, float, float, float]:
        """(y0, x0, y1, x1) in ovsam pixel coordinates (edges)."""
        ys = [r + 0.5 for r, _, _ in self.points]
        xs = [c + 0.5 for _, c, _ in self.points]
        if self.box is not None:
            r0, c0, r1, c1 = self.box
            ys += [min(r0, r1) + 0.5, max(r0, r1) + 0.5]
            xs += [min(c0, c1) + 0.5, max(c0, c1) + 0.5]
        return (min(ys), min(xs), max(ys), max(xs))

    def to_prompt(self, region: Region):
        """The :class:`ovsam_core.Prompt` in the pixels of the region as read."""
        from ovsam_core import Prompt

        s = float(region.step)
        pts = tuple(((c + 0.5 - region.x0) / s, (r + 0.5 - region.y0) / s) for r, c, _ in self.points)
        labels = tuple(int(lab) for _, _, lab in self.points)
        box = None
        if self.box is not None:
            r0, c0, r1, c1 = self.box
            box = ((min(c0, c1) + 0.5 - region.x0) / s, (min(r0, r1) + 0.5 - region.y0) / s,
                   (max(c0, c1) + 0.5 - region.x0) / s, (max(r0, r1) + 0.5 - region.y0) / s)
        return Prompt(pts, labels, box)

    def to_json(self) -> Dict[str, Any]:
        """Prompt in ovsam pixel coordinates of the plane (x, y; +0.5 convention)."""
        d: Dict[str, Any] = {}
        if self.points:
            d["points"] = [[c + 0.5, r + 0.5, int(lab)] for r, c, lab in self.points]
        if self.box is not None:
            r0, c0, r1, c1 = self.box
            d["box"] = [min(c0, c1) + 0.5, min(r0, r1) + 0.5, max(c0, c1) + 0.5, max(r0, r1) + 0.5]
        return d


def _label_value(v) -> int:
    if isinstance(v, str):
        return 0 if v.strip().lower() in (NEGATIVE, "neg", "0", "false") else 1
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    return 0 if v in (0, 0.0) else 1


def prompts_from_layers(points_layer, shapes_layer, plane: Sequence[int], label_column: str = "label") -> PromptSet:
    """The prompt of the current object from a Points layer (with a ``label`` feature,
    ``positive`` / ``negative``) and a Shapes layer (its last rectangle), on ``plane``.

    Both layers must share the image's data coordinates (same scale and translate). Shapes
    other than rectangles are ignored. Duck-typed: napari is not imported.
    """
    plane = tuple(int(p) for p in plane)
    n = len(plane)
    points: List[Tuple[float, float, int]] = []
    if points_layer is not None and len(points_layer.data):
        data = np.asarray(points_layer.data, dtype=float)
        feats = getattr(points_layer, "features", None)
        labels = list(feats[label_column]) if feats is not None and label_column in feats else [POSITIVE] * len(data)
        for row, lab in zip(data, labels):
            lead, (r, c) = row[:-2], row[-2:]
            if len(lead) >= n and tuple(int(round(v)) for v in lead[len(lead) - n:]) == plane:
                points.append((float(r), float(c), _label_value(lab)))
    box = None
    if shapes_layer is not None and len(shapes_layer.data):
        types = list(getattr(shapes_layer, "shape_type", ["rectangle"] * len(shapes_layer.data)))
        for verts, kind in zip(shapes_layer.data, types):
            if kind != "rectangle":
                continue
            v = np.asarray(verts, dtype=float)
            lead = v[0, :-2]
            if len(lead) >= n and tuple(int(round(x)) for x in lead[len(lead) - n:]) != plane:
                continue
            rows, cols = v[:, -2], v[:, -1]
            if rows.max() - rows.min() < 1e-6 or cols.max() - cols.min() < 1e-6:
                continue
            box = (float(rows.min()), float(cols.min()), float(rows.max()), float(cols.max()))
    return PromptSet(plane, tuple(points), box)


# ------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class Preview:
    """The current (uncommitted) object.

    ``mask`` is at the resolution the region was read at (one pixel = ``step`` x ``step`` plane
    pixels), cropped to its bounding box, whose top-left plane pixel is (``y0``, ``x0``). It is
    never upsampled as a whole: :meth:`mask_tile` gives plane-resolution tiles on demand.
    """

    prompts: PromptSet
    region: Region
    mask: np.ndarray = field(repr=False)
    y0: int
    x0: int
    label: str
    score: float
    top_k: Tuple[Tuple[str, float], ...]
    label_path: Tuple[str, ...] = ()
    quality: Dict[str, float] = field(default_factory=dict)

    @property
    def plane(self) -> Tuple[int, ...]:
        return self.prompts.plane

    @property
    def step(self) -> int:
        return self.region.step

    @property
    def y1(self) -> int:
        return min(self.y0 + self.mask.shape[0] * self.step, self.region.y1)

    @property
    def x1(self) -> int:
        return min(self.x0 + self.mask.shape[1] * self.step, self.region.x1)

    @property
    def area(self) -> int:
        """Mask pixels at plane resolution."""
        if self.step == 1:
            return int(self.mask.sum())
        h, w = self.mask.shape
        wy = np.minimum(self.step, self.y1 - (self.y0 + self.step * np.arange(h)))
        wx = np.minimum(self.step, self.x1 - (self.x0 + self.step * np.arange(w)))
        return int(wy @ self.mask.astype(np.int64) @ wx)

    @property
    def bbox_xyxy(self) -> Tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)

    def mask_tile(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The mask at plane resolution on [y0, y1) x [x0, x1) (zeros outside the object's box)."""
        out = np.zeros((y1 - y0, x1 - x0), bool)
        iy0, iy1 = max(y0, self.y0), min(y1, self.y1)
        ix0, ix1 = max(x0, self.x0), min(x1, self.x1)
        if iy1 <= iy0 or ix1 <= ix0:
            return out
        rows = (np.arange(iy0, iy1) - self.y0) // self.step
        cols = (np.arange(ix0, ix1) - self.x0) // self.step
        out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = self.mask[rows[:, None], cols[None, :]]
        return out

    def summary(self) -> str:
        alts = ", ".join(f"{n} {s:.2f}" for n, s in self.top_k[1:])
        return f"{self.label} ({self.score:.2f})" + (f"; also {alts}" if alts else "")


@dataclass(frozen=True)
class ObjectRecord:
    """One committed object: a row of the Labels layer's ``features``."""

    label_id: int
    class_name: str
    score: float
    suggested_class: str
    suggested_score: float
    choice: str                     # "suggested", "top-k" or "typed"
    top_k: Tuple[Tuple[str, float], ...]
    area: int
    bbox_xyxy: Tuple[int, int, int, int]
    plane: Tuple[int, ...]
    prompt: Dict[str, Any] = field(default_factory=dict)


@dataclass
class _Part:
    y0: int
    x0: int
    shape: Tuple[int, int]
    painted: np.ndarray             # np.packbits of the bool tile of pixels set to the label
    old: np.ndarray                 # their values before the commit (1-D)

    def painted_mask(self) -> np.ndarray:
        n = self.shape[0] * self.shape[1]
        return np.unpackbits(self.painted, count=n).astype(bool).reshape(self.shape)


@dataclass
class _Commit:
    record: ObjectRecord
    parts: List[_Part]


#: Commits, undo and export touch the labels in tiles of this side (bounded memory).
TILE = 1024


FEATURE_COLUMNS = ("index", "class_name", "score", "suggested_class", "suggested_score", "choice",
                   "top_k", "area", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "plane")


def _tight(mask: np.ndarray) -> Tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return (0, 0, 0, 0)
    return (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


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
        """The region embedded to answer ``prompts`` (the cached one when it still fits)."""
        src, s = self._require_image(), self.settings
        plane = src.check_plane(prompts.plane)
        H, W = src.height, src.width
        if self.region_mode() == "whole":
            y0, y1, x0, x1 = 0, H, 0, W
        else:
            ey0, ex0, ey1, ex1 = prompts.extent()
            ext = max(ey1 - ey0, ex1 - ex0)
            side = int(max(s.roi_size, math.ceil(ext * 1.5)))
            cached = self._region_emb[0][0] if self._region_emb else None
            margin = min(64.0, 0.1 * side)
            if (cached is not None and cached.plane == plane and max(cached.height, cached.width) <= 2 * side
                    and cached.contains(ey0, ex0, ey1, ex1, margin=min(margin, 0.1 * min(cached.height, cached.width)))):
                return cached
            cy, cx = (ey0 + ey1) / 2, (ex0 + ex1) / 2
            y0 = int(min(max(0, round(cy - side / 2)), max(0, H - side)))
            x0 = int(min(max(0, round(cx - side / 2)), max(0, W - side)))
            y1, x1 = min(H, y0 + side), min(W, x0 + side)
        want = max(1, math.ceil(max(y1 - y0, x1 - x0) / s.max_read))
        level, f = 0, 1
        if want > 1:  # the coarsest pyramid level that is not coarser than the stride we want
            for i, fi in enumerate(src.level_factors()):
                if fi and f < fi <= want:
                    level, f = i, fi
        stride = want // f
        step = f * stride
        y0, x0 = (y0 // step) * step, (x0 // step) * step
        return Region(plane, y0, y1, x0, x1, step, level, stride)

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
        r0, r1, c0, c1 = _tight(obj.mask)
        pv = Preview(prompts, region, obj.mask[r0:r1, c0:c1].copy(), region.y0 + r0 * region.step,
                     region.x0 + c0 * region.step, obj.label, float(obj.score), tuple(obj.top_k),
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
        with self._lock:
            lid = self._next_id
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
                    parts.append(_Part(ty, tx, painted.shape, np.packbits(painted), old[painted]))
                    old[painted] = lid
                    write_block(self.labels, pv.plane, ty, tx, old)
                    area += int(painted.sum())
                    r0, r1, c0, c1 = _tight(painted)
                    box = [min(box[0], ty + r0), min(box[1], tx + c0), max(box[2], ty + r1), max(box[3], tx + c1)]
            if not parts:
                raise ValueError("the object lies entirely under committed objects; "
                                 "undo them or turn on 'paint over'")
            name = (class_name or "").strip() or pv.label
            scores = dict(pv.top_k)
            choice = "suggested" if name == pv.label else ("top-k" if name in scores else "typed")
            rec = ObjectRecord(
                label_id=lid, class_name=name, score=float(scores.get(name, math.nan)),
                suggested_class=pv.label, suggested_score=pv.score, choice=choice, top_k=pv.top_k,
                area=area, bbox_xyxy=(int(box[1]), int(box[0]), int(box[3]), int(box[2])),
                plane=pv.plane, prompt=pv.prompts.to_json())
            self.objects[lid] = rec
            self._history.append(_Commit(rec, parts))
            self._next_id = lid + 1
            self.preview = None
            return rec

    def undo(self) -> Optional[ObjectRecord]:
        """Remove the last committed object (its pixels get their previous values back)."""
        with self._lock:
            if not self._history:
                return None
            c = self._history.pop()
            rec = c.record
            for part in c.parts:
                h, w = part.shape
                painted = part.painted_mask()
                cur = plane_bbox(self.labels, rec.plane, part.y0, part.y0 + h, part.x0, part.x0 + w)
                restore = painted & (cur == rec.label_id)
                vals = np.zeros_like(cur)
                vals[painted] = part.old
                cur[restore] = vals[restore]
                write_block(self.labels, rec.plane, part.y0, part.x0, cur)
            self.objects.pop(rec.label_id, None)
            if rec.label_id == self._next_id - 1:
                self._next_id = rec.label_id
            return rec

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
            if c.record.label_id == label_id:
                c.record = new
        return new

    def features(self) -> Dict[str, np.ndarray]:
        """The Labels layer's ``features`` table: one row per object, keyed by ``index``."""
        recs = list(self.objects.values())
        return {
            "index": np.array([r.label_id for r in recs], dtype=np.int64),
            "class_name": np.array([r.class_name for r in recs], dtype=object),
            "score": np.array([r.score for r in recs], dtype=float),
            "suggested_class": np.array([r.suggested_class for r in recs], dtype=object),
            "suggested_score": np.array([r.suggested_score for r in recs], dtype=float),
            "choice": np.array([r.choice for r in recs], dtype=object),
            "top_k": np.array([json.dumps([[n, round(s, 6)] for n, s in r.top_k]) for r in recs], dtype=object),
            "area": np.array([r.area for r in recs], dtype=np.int64),
            "bbox_x0": np.array([r.bbox_xyxy[0] for r in recs], dtype=np.int64),
            "bbox_y0": np.array([r.bbox_xyxy[1] for r in recs], dtype=np.int64),
            "bbox_x1": np.array([r.bbox_xyxy[2] for r in recs], dtype=np.int64),
            "bbox_y1": np.array([r.bbox_xyxy[3] for r in recs], dtype=np.int64),
            "plane": np.array([",".join(map(str, r.plane)) for r in recs], dtype=object),
        }

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
        from .export import export_all

        return export_all(self, out_dir, name or _safe_name(self._require_image().name), progress=progress)


def _safe_name(text: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip("._")
    return keep or "ovsam"
