"""Class names as a host writes them, and host labels from plain names.

A vocabulary entry holds synonyms separated by commas (``"dog,puppy"``; LVIS: ``"aerosol_can,
spray_can"``). A host shows and stores one name per class: the **first synonym as written**
(``aerosol_can``, ``traffic light``), while the core's results carry display names
(:meth:`Vocabulary.display_names`: ``_`` as a space, lower case). These helpers convert, and
:func:`labels_from_classes` reads the classes a user gives a host (a list, or text in the one
vocabulary syntax) as host labels.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

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


def labels_from_classes(classes: Union[None, str, Sequence[str]]) -> Optional[List[HostLabel]]:
    """Host labels of the classes a user gave (None when there are none).

    ``classes``: a list of names (``"dog,puppy"``: synonyms, see :func:`labels_from_names`), or
    text in the syntax of :func:`ovsam_core.parse_vocabulary_text` (``"dog|puppy, cat"``, a
    preset, a vocabulary file or folder: its classes).

    Raises:
        VocabularyError: a path that does not exist (never taken as a class name), an
            unreadable file, empty or duplicate classes.
    """
    from ..vocabulary import load_vocabulary, parse_vocabulary_text

    if classes is None:
        return None
    if isinstance(classes, str):
        parsed = parse_vocabulary_text(classes)
        if parsed is None:
            return None
        classes = parsed if isinstance(parsed, list) else list(load_vocabulary(parsed).names)
    return labels_from_names(classes) or None
