"""Which of a host's labels a segmented object gets: text evidence and few-shot prototypes blended,
the choice restricted to the labels one output (a host control) allows."""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .fewshot import blend_probabilities
from .labelmap import LabelMapper

#: where an interactive object's label comes from: the recognised class, or the smart tool's label
LABEL_SOURCES = ("model", "smart")


def choose_label(names: Sequence[str], mapper: LabelMapper, p_text: np.ndarray, sims: Mapping[str, float],
                 smart_label: Optional[str], *, top_k: int, label_source: str, prototype_weight: float
                 ) -> Optional[Tuple[str, float, List[Tuple[str, float]]]]:
    """(label, score, top-k) among the labels ``names`` of one output control.

    Candidates are the labels with text evidence (a vocabulary class maps to them, ``p_text``)
    or prototypes (``sims``); their probabilities are blended (:func:`ovsam_core.blend_probabilities`).
    ``label_source="smart"`` keeps the label the annotator chose on the smart tool.
    """
    idx = [mapper.index[n] for n in names if n in mapper.index]
    names = [mapper.labels[i].name for i in idx]
    if not names:
        return None
    p_all = np.array([p_text[i] for i in idx], np.float64)
    # candidates: labels with text evidence (a vocabulary class maps to them) or prototypes
    keep = [j for j, n in enumerate(names) if p_all[j] > 0 or n in sims]
    if not keep:
        if smart_label is not None:
            lab = mapper.find(smart_label)
            if lab is not None and lab.name in names:
                return lab.name, 1.0, [(lab.name, 1.0)]
        return None
    all_names = names
    names = [names[j] for j in keep]
    p = p_all[keep]
    probs = blend_probabilities(p, [sims.get(n) for n in names], prototype_weight)
    order = np.argsort(-probs, kind="stable")
    top = [(names[i], float(probs[i])) for i in order[:top_k]]
    best, score = top[0]
    if label_source == "smart" and smart_label is not None:
        lab = mapper.find(smart_label)
        if lab is not None and lab.name in all_names:
            best = lab.name
            score = float(probs[names.index(best)]) if best in names else 0.0
    return best, score, top
