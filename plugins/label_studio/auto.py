"""Pre-labelling of a task without regions: the project's labels in, Label Studio regions out.

Reads the task's images and the output controls' labels, calls :func:`ovsam_core.hosts.prelabel`
(``find``: the project's labels as queries against the background vocabulary; ``everything``:
the model's vocabulary mapped onto them) and writes each object in every output control whose
labels hold it (brush RLE, polygons, rectangle), with its score.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Tuple

from ovsam_core import AutoSettings, prelabel

from . import outputs

log = logging.getLogger("ovsam.label_studio")


def prelabel_task(backend, task: Mapping, cfg, settings: AutoSettings) -> Tuple[List[Dict[str, Any]], List[float]]:
    """(regions, object scores) of ``task`` pre-labelled with ``settings`` (mode find/everything)."""
    data = task.get("data") if isinstance(task.get("data"), Mapping) else {}
    regions: List[Dict[str, Any]] = []
    scores: List[float] = []
    for to_name in dict.fromkeys(c.to_name for c in cfg.output_controls):
        controls = cfg.outputs_for(to_name)
        names = {c.name: {lab.name for lab in c.labels_for(data)} for c in controls}
        labels = cfg.labels(data, controls)
        if not labels:
            continue
        img = backend._image_for(task, cfg, to_name)
        pred = backend.predictor()
        with backend.model_lock:
            res = prelabel(pred, img, settings, list(labels),
                           vocabulary=backend.s.vocab if settings.mode == "everything" else None)
        for o in res:
            top = [(o.label, o.score)]
            meta = outputs.region_meta(top, o.object.top_k if settings.mode == "everything" else None)
            for c in controls:
                if o.label in names[c.name]:
                    regions += outputs.object_regions(c, o.mask, o.bbox_xyxy, o.label, img.width, img.height,
                                                      o.score, meta)[0]
            scores.append(float(o.score))
        log.info("task %s: %s on %r: %d objects of %d labels (%d unmapped)", task.get("id"), settings.mode, to_name,
                 len(res), len(labels), res.unmapped)
    return regions, scores
