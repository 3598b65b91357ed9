"""Pre-labelling for hosts: label what nobody has prompted, with a host's own label set.

Every host (Label Studio, FiftyOne, napari, the CLI) asks the same thing: "on this image, give
me every object whose name is one of *my* labels". This module is that call, once:

* :class:`AutoSettings`: the user's choice (``mode``: ``off`` | ``find`` | ``everything``,
  points per side, minimum score, ...), parsed from a host's string settings with errors that
  say which key and which values are valid.
* :func:`prelabel`: runs the core's prompt-free modes (:mod:`ovsam_core.automatic`) and maps
  each object onto the host's labels (:class:`~ovsam_core.hosts.labelmap.HostLabel`):

  - ``find``: the host's labels are the queries (each label's text and synonyms), competing
    against a background vocabulary (default: the model's own), so a label only wins masks that
    look more like it than like anything else;
  - ``everything``: the model's (or a given) vocabulary names every object; an object keeps the
    host label its classes map to when their summed probability reaches ``min_score``, else it
    is dropped (counted in :attr:`PrelabelResult.unmapped`); without host
    labels every object is kept under its class name.

* Host-neutral conversions of the result: COCO annotations (:func:`coco_annotations`), a
  relative box + tight mask crop (:meth:`LabeledObject.relative_box`, :meth:`LabeledObject.crop`)
  and an instance label image (:func:`instance_image`). Polygons:
  :func:`ovsam_core.masks.mask_to_polygons` on :attr:`LabeledObject.mask`.

Coordinates are original-image pixels (x right, y down) of the image passed in; when a
``region`` is given, of the whole image (masks are then held in the region's frame, see
:attr:`PrelabelResult.origin`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..automatic import AutoObject, AutoResult, EverythingOptions, Progress
from .labelmap import HostLabel, LabelMapper, normalise

if TYPE_CHECKING:  # pragma: no cover
    from ..predictor import Predictor
    from ..vocabulary import VocabSource

AUTO_MODES = ("off", "find", "everything")

# settings keys a host may pass (strings allowed) -> (field, parser, what is valid)
_KEYS = {
    "auto": "mode", "mode": "mode",
    "points_per_side": "points_per_side", "min_score": "min_score", "max_objects": "max_objects",
    "min_stability": "stability_thresh", "stability_thresh": "stability_thresh",
    "crop_layers": "crop_n_layers", "crop_n_layers": "crop_n_layers", "background": "background",
}


def _parse_value(name: str, value: Any) -> Any:
    if name == "mode":
        v = str(value).strip().lower() or "off"
        v = {"none": "off", "false": "off", "0": "off", "no": "off", "all": "everything"}.get(v, v)
        if v not in AUTO_MODES:
            raise ValueError(f"auto must be one of {', '.join(AUTO_MODES)}, got {value!r}")
        return v
    if name == "background":
        return None if value in (None, "") else value
    if name == "max_objects" and value in (None, "", "none", "None", 0, "0"):
        return None
    kind = float if name in ("min_score", "stability_thresh") else int
    try:
        return kind(value)
    except (TypeError, ValueError):
        want = "a number" if kind is float else "an integer"
        raise ValueError(f"{name} must be {want}, got {value!r}") from None


@dataclass(frozen=True)
class AutoSettings:
    """What to pre-label on an image with no prompt.

    Attributes:
        mode: ``off`` (nothing), ``find`` (the host's labels as queries) or ``everything``
            (every object the vocabulary names, kept if it maps to a host label).
        points_per_side, min_score, stability_thresh, crop_n_layers, max_objects: as in
            :class:`~ovsam_core.automatic.EverythingOptions`.
        background: find mode's background vocabulary (default: the model's own); ``[]`` lets
            the labels compete only with each other and the background column.
    """

    mode: str = "off"
    points_per_side: int = 32
    min_score: float = 0.5
    stability_thresh: float = 0.85
    crop_n_layers: int = 0
    max_objects: Optional[int] = None
    background: Optional[Any] = None

    @classmethod
    def parse(cls, values: Optional[Mapping[str, Any]] = None, *, prefix: str = "", **defaults) -> "AutoSettings":
        """Settings from a host's mapping (strings allowed, e.g. Label Studio's ``extra_params``
        or environment-like settings); ``prefix`` is stripped from keys (``auto_`` ...).
        Unknown keys are ignored; a bad value raises ``ValueError`` naming key and valid values."""
        kw: Dict[str, Any] = dict(defaults)
        for key, value in (values or {}).items():
            k = str(key).lower()
            k = k[len(prefix):] if prefix and k.startswith(prefix) else k
            name = _KEYS.get(k.replace("-", "_"))
            if name is not None:
                kw[name] = _parse_value(name, value)
        return cls(**kw).validated()

    def validated(self) -> "AutoSettings":
        """These settings, or ``ValueError`` naming the bad one."""
        _parse_value("mode", self.mode)
        self.options()
        return self

    def options(self, **overrides) -> EverythingOptions:
        """The :class:`EverythingOptions` of these settings (validated)."""
        kw = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("mode", "background")}
        kw.update(overrides)
        return EverythingOptions(**kw).validated()

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able settings (for run records and logs)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["background"] is not None and not isinstance(out["background"], (str, list)):
            out["background"] = str(out["background"])
        return out


@dataclass(frozen=True)
class LabeledObject:
    """One pre-labelled object: the core's :class:`AutoObject` and the host label it maps to.

    Attributes:
        label: the host label's ``name`` (or the class display name when there are no host labels).
        score: the probability of that label (summed over the classes mapping to it).
        object: the underlying :class:`~ovsam_core.automatic.AutoObject` (mask RLE in the
            region's frame, ``bbox_xyxy``/``point`` in the region's frame).
        origin: (x0, y0) of the region in the whole image ((0, 0) for the whole image).
    """

    label: str
    score: float
    object: AutoObject
    origin: Tuple[int, int] = (0, 0)

    @property
    def mask(self) -> np.ndarray:
        """(h, w) bool in the region's frame (the whole image when no region was given)."""
        return self.object.mask

    @property
    def bbox_xyxy(self) -> Tuple[int, int, int, int]:
        """Tight box (x0, y0, x1, y1), exclusive end, whole-image pixels."""
        x0, y0, x1, y1 = self.object.bbox_xyxy
        ox, oy = self.origin
        return (x0 + ox, y0 + oy, x1 + ox, y1 + oy)

    @property
    def point(self) -> Tuple[float, float]:
        """The grid point (x, y) that produced the mask, whole-image pixels."""
        return (self.object.point[0] + self.origin[0], self.object.point[1] + self.origin[1])

    def relative_box(self, width: int, height: int) -> Tuple[float, float, float, float]:
        """[x, y, w, h] of the box as fractions of a ``width`` x ``height`` image (FiftyOne)."""
        from .relative import pixels_to_relative

        return pixels_to_relative(*self.bbox_xyxy, width, height)

    def crop(self) -> np.ndarray:
        """(y1-y0, x1-x0) bool: the mask inside :attr:`bbox_xyxy`."""
        x0, y0, x1, y1 = self.object.bbox_xyxy
        return self.mask[y0:y1, x0:x1]

    def to_json(self) -> Dict[str, Any]:
        """A JSON-able summary (no mask): label, score, box, point, quality, top-k classes."""
        o = self.object
        return {"label": self.label, "score": round(self.score, 6), "class": o.label,
                "bbox_xyxy": list(self.bbox_xyxy), "point": [round(v, 2) for v in self.point],
                "area": o.area, "quality": {k: round(v, 6) for k, v in o.quality.items()},
                "top_k": [[n, round(s, 6)] for n, s in o.top_k]}


@dataclass(frozen=True)
class PrelabelResult:
    """All objects of one :func:`prelabel` call, best rank first.

    Attributes:
        objects: the kept objects.
        settings: the :class:`AutoSettings` used.
        image_size: (H, W) of the whole image.
        origin: (x0, y0) of the region that was labelled ((0, 0): the whole image).
        region_size: (h, w) of that region (masks' shape).
        unmapped: objects found whose class maps to no host label (dropped).
        model: the model's name; ``auto`` the core result (``None`` when ``mode="off"``).
    """

    objects: Tuple[LabeledObject, ...]
    settings: AutoSettings
    image_size: Tuple[int, int]
    origin: Tuple[int, int] = (0, 0)
    region_size: Tuple[int, int] = (0, 0)
    unmapped: int = 0
    model: str = ""
    auto: Optional[AutoResult] = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self):
        return iter(self.objects)


def label_queries(labels: Sequence[HostLabel]) -> Tuple[List[str], List[HostLabel]]:
    """Find-mode queries for host labels: each label's vocabulary entry (text, synonyms),
    one per distinct name; returns (queries, the label of each query)."""
    queries: List[str] = []
    owners: List[HostLabel] = []
    seen = set()
    for lab in labels:
        entry = lab.vocab_entry
        keys = normalise(entry)
        if not keys or keys[0] in seen:
            continue
        seen.add(keys[0])
        queries.append(entry)
        owners.append(lab)
    return queries, owners


def as_host_labels(labels: Optional[Sequence[Any]]) -> Optional[List[HostLabel]]:
    """Host labels from :class:`HostLabel` objects or plain names (``None`` stays ``None``)."""
    if labels is None:
        return None
    return [lab if isinstance(lab, HostLabel) else HostLabel(str(lab), str(lab)) for lab in labels]


def _crop_image(image, region: Sequence[int]):
    from ..images import LoadedImage, load_image

    img = image if isinstance(image, LoadedImage) else load_image(image)
    x0, y0, x1, y1 = (int(v) for v in region)
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(img.width, x1), min(img.height, y1)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"region {tuple(region)} lies outside the {img.width}x{img.height} image")
    sub = load_image(np.ascontiguousarray(img.rgb[y0:y1, x0:x1]))
    return sub, (x0, y0), (img.height, img.width)


def prelabel(predictor: "Predictor", image, settings: AutoSettings, labels: Optional[Sequence[Any]] = None, *,
             vocabulary: "VocabSource" = None, region: Optional[Sequence[int]] = None,
             progress: Optional[Progress] = None) -> PrelabelResult:
    """Pre-label ``image`` with no prompt; objects carry host labels.

    Args:
        predictor: the :class:`~ovsam_core.Predictor`.
        image: path, array, PIL image or :class:`~ovsam_core.LoadedImage` (an
            :class:`~ovsam_core.ImageEmbedding` works without ``region``/crop layers).
        settings: :class:`AutoSettings` (``mode="off"`` returns no object, runs nothing).
        labels: the host's labels (:class:`HostLabel` or names); ``None``: everything mode keeps
            every object under its class name, find mode needs labels.
        vocabulary: everything mode's vocabulary (default the model's).
        region: (x0, y0, x1, y1) whole-image pixels: label only this part (a large image's
            visible area or tile); masks are then in the region's frame.
        progress: ``progress(done, total)`` between decode batches; may raise
            :class:`~ovsam_core.automatic.Cancelled`.
    Returns:
        :class:`PrelabelResult`, best rank first.
    """
    settings = settings.validated()
    hosts = as_host_labels(labels)
    origin = (0, 0)
    if region is not None:
        image, origin, full = _crop_image(image, region)
    if settings.mode == "off":
        size = getattr(image, "height", 0), getattr(image, "width", 0)
        return PrelabelResult((), settings, full if region is not None else size, origin, size,
                              model=predictor.name)
    opts = settings.options()
    kept: List[LabeledObject] = []
    unmapped = 0
    if settings.mode == "find":
        if not hosts:
            raise ValueError("find mode needs the labels to look for (the project's labels or a classes list)")
        queries, owners = label_queries(hosts)
        if not queries:
            raise ValueError(f"none of the labels {[h.name for h in hosts]} has a name that can be searched for")
        res = predictor.find(image, queries, settings.background, options=opts, progress=progress)
        for o in res.objects:
            kept.append(LabeledObject(owners[queries.index(o.query)].name, o.score, o, origin))
    else:
        res = predictor.segment_everything(image, vocabulary, options=opts, progress=progress)
        mapper = None
        if hosts:
            mapper = LabelMapper(hosts, list(predictor.classifier(vocabulary).vocabulary.names))
        for o in res.objects:
            if mapper is None:
                kept.append(LabeledObject(o.label, o.score, o, origin))
                continue
            p = mapper.label_probs(o.top_k)
            if p.max(initial=0.0) < max(settings.min_score, 1e-9):   # its name is not one of the labels
                unmapped += 1
                continue
            i = int(np.argmax(p))
            kept.append(LabeledObject(mapper.labels[i].name, float(min(p[i], 1.0)), o, origin))
    h, w = res.image_size
    full_size = full if region is not None else (h, w)
    return PrelabelResult(tuple(kept), settings, full_size, origin, (h, w), unmapped, predictor.name, res)


def from_auto(res: AutoResult, settings: Optional[AutoSettings] = None) -> PrelabelResult:
    """A core :class:`AutoResult` as a :class:`PrelabelResult` whose labels are the class names."""
    mode = "find" if res.settings.get("queries") is not None else "everything"
    settings = settings or AutoSettings(mode=mode)
    objs = tuple(LabeledObject(o.label, o.score, o) for o in res.objects)
    return PrelabelResult(objs, settings, res.image_size, (0, 0), res.image_size, 0, res.model, res)


def coco_annotations(result: PrelabelResult, image_id: int,
                     category_ids: Union[Mapping[str, int], Callable[[LabeledObject], int]]) -> List[Dict[str, Any]]:
    """COCO *results* entries (RLE segmentation in the whole image, xywh box, score) of a
    :class:`PrelabelResult`; ``category_ids`` maps a label to its category id (a mapping, or a
    function of the object); a label missing from the mapping raises ``KeyError``."""
    from ..results import mask_to_rle

    cat = category_ids if callable(category_ids) else (lambda o: category_ids[o.label])

    whole = result.origin == (0, 0) and result.region_size == result.image_size
    anns = []
    for o in result.objects:
        x0, y0, x1, y1 = o.bbox_xyxy
        if whole:
            rle = dict(o.object.rle)
        else:
            full = np.zeros(result.image_size, dtype=bool)
            ox, oy = result.origin
            rh, rw = result.region_size
            full[oy:oy + rh, ox:ox + rw] = o.mask
            rle = mask_to_rle(full)
        anns.append({"image_id": image_id, "category_id": int(cat(o)), "segmentation": rle,
                     "bbox": [x0, y0, x1 - x0, y1 - y0], "score": round(float(o.score), 6), "area": o.object.area,
                     "point": [round(v, 2) for v in o.point], "label": o.label,
                     **({"query": o.object.query} if o.object.query else {})})
    return anns


def instance_image(result: PrelabelResult, *, start: int = 1, dtype=np.int32) -> np.ndarray:
    """(h, w) instance ids in the region's frame: object ``k`` (rank order) gets ``start + k``;
    where masks overlap the better-ranked object wins; 0 = no object."""
    out = np.zeros(result.region_size, dtype=dtype)
    for k in range(len(result.objects) - 1, -1, -1):
        out[result.objects[k].mask] = start + k
    return out
