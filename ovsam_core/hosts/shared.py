"""One loaded :class:`~ovsam_core.Predictor` per model and settings, shared in a process.

Hosts that run many requests or operators in one process (FiftyOne operators, a napari session,
an ML backend worker) load each model once: :func:`shared_predictor` returns the same instance
for the same arguments (thread-safe).
"""
from __future__ import annotations

import threading
from typing import Dict, Tuple

from ..predictor import Predictor

_PREDICTORS: Dict[Tuple, Predictor] = {}
_LOCK = threading.Lock()


def shared_predictor(model: str = "ovsam-lvis", *, device: str = "auto", dtype: str = "auto", weights_dir=None,
                     weights=None, download: bool = True) -> Predictor:
    """The process's :class:`Predictor` for these arguments (loaded on first use, quietly)."""
    key = (model, device, dtype, str(weights_dir or ""), str(weights or ""))
    with _LOCK:
        pred = _PREDICTORS.get(key)
        if pred is None:
            pred = _PREDICTORS[key] = Predictor(model, device=device, dtype=dtype, weights_dir=weights_dir,
                                                weights=weights, download=download, progress=False)
    return pred
