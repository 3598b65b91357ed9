"""Pre-labelling an image for a host with several outputs, each with its own labels.

The counterpart of :func:`~ovsam_core.hosts.labelprompts.label_prompts` for an image without
prompts: a host whose outputs allow different labels (a Label Studio project's brush and polygon
controls, FiftyOne fields, napari layers) pre-labels once with the union of their labels
(:func:`~ovsam_core.hosts.prelabel.prelabel`) and gets each object as a
:class:`~ovsam_core.hosts.labelprompts.PromptObject` whose ``choices`` hold every output that
allows its label, so that one writer turns prompted and pre-labelled objects into host regions.

Coordinates are original-image pixels: masks (H, W) bool, boxes (x0, y0, x1, y1) with exclusive end.
"""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager, List, Mapping, Optional, Sequence, Tuple

from ..prompts import Prompt
from .labelmap import HostLabel, merge_labels
from .labelprompts import PromptObject
from .prelabel import AutoSettings, PrelabelResult, prelabel


def prelabel_outputs(predictor, image, settings: AutoSettings, outputs: Mapping[str, Sequence[HostLabel]], *,
                     vocabulary: Any = None, lock: Optional[ContextManager] = None
                     ) -> Tuple[PrelabelResult, List[PromptObject]]:
    """Pre-label ``image`` (the whole image) with the labels of every output.

    Args:
        predictor: an :class:`ovsam_core.Predictor`.
        image: anything :func:`~ovsam_core.hosts.prelabel.prelabel` takes.
        settings: ``find`` (the labels are the queries) or ``everything`` (``vocabulary``, default
            the model's, mapped onto the labels); ``off`` finds nothing.
        outputs: output name -> the labels it allows (a label in several outputs is asked once,
            as the first output declares it).
        vocabulary: everything mode's vocabulary (ignored by find mode).
        lock: held around the model calls (a service serialising its model).
    Returns:
        The :class:`PrelabelResult` and, per object in its order, a :class:`PromptObject`: its
        prompt is the grid point that found it, ``vocabulary_top_k`` the classes' top-k in
        everything mode (empty in find mode), ``choices`` output -> (label, score, [(label, score)]).
    Raises:
        ValueError: no output has a label (find mode).
    """
    with lock or contextlib.nullcontext():
        res = prelabel(predictor, image, settings, list(merge_labels(*outputs.values())),
                       vocabulary=vocabulary if settings.mode == "everything" else None)
    allowed = {name: {lab.name for lab in labs} for name, labs in outputs.items()}
    objects = []
    for i, o in enumerate(res.objects):
        choice = (o.label, float(o.score), [(o.label, float(o.score))])
        objects.append(PromptObject(i, Prompt.from_points([o.point]), o.mask, o.bbox_xyxy, int(o.object.area),
                                    tuple(o.object.top_k) if settings.mode == "everything" else (),
                                    {name: choice for name, names in allowed.items() if o.label in names}))
    return res, objects
