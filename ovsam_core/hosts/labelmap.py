"""Class names <-> a host's labels: match vocabulary classes to the labels of a host project.

Hosts label objects with their own label sets (Label Studio's ``<Label value alias
predicted_values>``, a FiftyOne field's classes). :class:`LabelMapper` turns the class
probabilities of any vocabulary into probabilities of those labels, and builds a vocabulary
from the labels themselves (each label's text, its synonyms as synonyms).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..text import split_label


def normalise(text: str) -> List[str]:
    """Matching keys of a name: its synonyms, lower-cased, ``_`` as space, spaces collapsed."""
    keys = split_label(text) or [text.strip().lower()]
    return [re.sub(r"\s+", " ", k) for k in keys if k]


@dataclass(frozen=True)
class HostLabel:
    """One label of a host's label set.

    Attributes:
        name: what results carry (e.g. Label Studio's alias if set, else the value).
        text: the human-readable class name that is embedded.
        synonyms: other names that mean this label (Label Studio's ``predicted_values``).
    """

    name: str
    text: str
    synonyms: Tuple[str, ...] = ()

    @property
    def keys(self) -> Tuple[str, ...]:
        out: List[str] = []
        for t in (self.text, self.name, *self.synonyms):
            for k in normalise(t):
                if k not in out:
                    out.append(k)
        return tuple(out)

    @property
    def vocab_entry(self) -> str:
        """A vocabulary line: the value, then the predicted values as synonyms."""
        parts = [self.text, *self.synonyms]
        return ",".join(p.replace(",", " ").strip() for p in parts if p.strip())



def merge_labels(*groups: Iterable[HostLabel]) -> Tuple[HostLabel, ...]:
    """The labels of all ``groups`` in order, each ``name`` once (the first one wins)."""
    out: Dict[str, HostLabel] = {}
    for group in groups:
        for lab in group:
            out.setdefault(lab.name, lab)
    return tuple(out.values())


class LabelMapper:
    """Maps a vocabulary's classes onto a host's labels.

    A class maps to a label when one of its synonyms equals (:func:`normalise`: case-insensitive,
    ``_`` read as a space) the label's text, name or one of its synonyms; a label's probability
    is the sum of its classes' probabilities.

    Args:
        labels: the host's labels (any order; duplicates by name are merged).
        class_names: the vocabulary's class strings (synonyms separated by commas), or ``None``
            when the vocabulary *is* the project's labels (:meth:`vocabulary` builds it).
    """

    def __init__(self, labels: Sequence[HostLabel], class_names: Optional[Sequence[str]] = None) -> None:
        self.labels: Tuple[HostLabel, ...] = merge_labels(labels)
        self.index = {lab.name: i for i, lab in enumerate(self.labels)}
        key_to_labels: Dict[str, List[int]] = {}
        for i, lab in enumerate(self.labels):
            for k in lab.keys:
                key_to_labels.setdefault(k, []).append(i)
        self._key_to_labels = key_to_labels
        self.own_vocabulary = class_names is None
        if class_names is None:
            class_names = self.vocabulary()
        # display name (first synonym) -> labels it maps to
        self._display: Dict[str, List[int]] = {}
        for name in class_names:
            syn = normalise(name)
            if not syn:
                continue
            hits: List[int] = []
            for s in syn:
                for i in key_to_labels.get(s, []):
                    if i not in hits:
                        hits.append(i)
            if hits:
                self._display.setdefault(syn[0], [])
                for i in hits:
                    if i not in self._display[syn[0]]:
                        self._display[syn[0]].append(i)

    def vocabulary(self) -> List[str]:
        """Vocabulary entries for the project's own labels (deduplicated, embeddable only)."""
        out, seen = [], set()
        for lab in self.labels:
            entry = lab.vocab_entry
            keys = normalise(entry)
            if not split_label(entry) or keys[0] in seen:
                continue
            seen.add(keys[0])
            out.append(entry)
        return out

    @property
    def mapped(self) -> bool:
        """Whether any vocabulary class maps to a project label."""
        return bool(self._display)

    def label_probs(self, top_k: Iterable[Tuple[str, float]]) -> np.ndarray:
        """(L,) probability of each label: the summed probability of the classes mapping to it."""
        p = np.zeros(len(self.labels), np.float64)
        for name, score in top_k:
            key = normalise(name)
            for i in self._display.get(key[0] if key else "", ()):
                p[i] += float(score)
        return p

    def find(self, name: str) -> Optional[HostLabel]:
        """A project label by result name, or by value / alias / predicted value."""
        if name in self.index:
            return self.labels[self.index[name]]
        keys = normalise(name)
        for k in keys:
            hits = self._key_to_labels.get(k)
            if hits:
                return self.labels[hits[0]]
        return None
