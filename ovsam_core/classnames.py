"""Class names as a host writes them, and host labels from plain names.

A vocabulary entry holds synonyms separated by commas (``"dog,puppy"``; LVIS: ``"aerosol_can,
spray_can"``). A host shows and stores one name per class: the **first synonym as written**
(``aerosol_can``, ``traffic light``), while the core's results carry display names
(:meth:`Vocabulary.display_names`: ``_`` as a space, lower case). These helpers convert.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

from .labelmap import HostLabel


def labels_from_names(names: Iterable[str]) -> List[HostLabel]:
    """One :class:`HostLabel` per name; a name's first synonym (as written) is the label, the
    others its synonyms (``"dog,puppy"`` -> ``HostLabel("dog", "dog", ("puppy",))``)."""
    out = []
    for n in names:
        parts = [p.strip() for p in str(n).split(",") if p.strip()]
        if parts:
            out.append(HostLabel(parts[0], parts[0], tuple(parts[1:])))
    return out


def written_names(vocabulary) -> Tuple[List[str], Dict[str, str]]:
    """(the written name of each class, display name -> written name) of a
    :class:`~ovsam_core.Vocabulary` (first class wins for a shared display name)."""
    names = [n.split(",")[0].strip() for n in vocabulary.names]
    display: Dict[str, str] = {}
    for d, n in zip(vocabulary.display_names(), names):
        display.setdefault(d, n)
    return names, display
