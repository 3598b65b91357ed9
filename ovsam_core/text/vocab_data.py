"""Shipped vocabularies (public class lists, in ``ovsam_core/text/data/*.tsv``).

* ``lvis``: the 1203 LVIS v1 categories in mmdet order (sorted by id), with mmdet's
  spellings (the names upstream embedded); novel = frequency ``r`` (337), base = ``c`` + ``f``.
* ``coco``: the 80 COCO classes in standard order with upstream's comma-separated synonym
  strings (173 synonyms) and the open-vocabulary split: 48 base, 17 novel, 15 other.
* ``imagenet21k``: 19,167 ImageNet-21k WordNet classes with comma-separated synonyms.
* ``shapes``: the 8 synthetic classes of :mod:`ovsam_core.synthetic` (``ovsam-shapes``).

Each :class:`Vocabulary` ``names`` entry is what :func:`~ovsam_core.text.build_classifier`
takes (it is split into synonyms by :func:`~ovsam_core.text.split_label`).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Callable, Dict, List, Optional, Tuple

import torch

#: LVIS's own spelling -> the one in mmdet's ``LVISV1Dataset`` class list (used upstream).
LVIS_MMDET_SPELLING: Dict[str, str] = {"speaker_(stero_equipment)": "speaker_(stereo_equipment)"}


@dataclass(frozen=True)
class Vocabulary:
    """A class list.

    Attributes:
        key: short name (``'lvis'``, ``'coco'``, ``'imagenet21k'``).
        names: C class names / synonym strings, in classifier index order.
        ids: C dataset ids as strings (LVIS category id, COCO index, WordNet id).
        split: C entries ``'base'`` / ``'novel'`` / ``'other'``, or None when undefined.
        frequency: LVIS only: C entries ``'r'`` / ``'c'`` / ``'f'``.
        parents: optional hierarchy: C entries, each the index of the parent class or None.
    """

    key: str
    names: Tuple[str, ...]
    ids: Tuple[str, ...]
    split: Optional[Tuple[str, ...]] = None
    frequency: Optional[Tuple[str, ...]] = None
    parents: Optional[Tuple[Optional[int], ...]] = None

    def __len__(self) -> int:
        return len(self.names)

    def _mask(self, which: str) -> torch.Tensor:
        if self.split is None:
            raise ValueError(f"vocabulary {self.key!r} has no base/novel split; use 'lvis' or "
                             "'coco', or pass your own mask.")
        return torch.tensor([s == which for s in self.split], dtype=torch.bool)

    def novel_mask(self) -> torch.Tensor:
        """BoolTensor (C,): True for novel classes (LVIS rare, COCO-17)."""
        return self._mask("novel")

    def base_mask(self) -> torch.Tensor:
        """BoolTensor (C,): True for base classes (LVIS common+frequent, COCO-48)."""
        return self._mask("base")

    def ancestors(self, index: int) -> List[int]:
        """Indices of the parent chain of class ``index`` (nearest first; empty without a hierarchy)."""
        chain: List[int] = []
        p = self.parents[index] if self.parents else None
        while p is not None and p not in chain:
            chain.append(p)
            p = self.parents[p]
        return chain

    def display_names(self) -> List[str]:
        """Human-readable names: the first synonym, ``'_'`` replaced by spaces."""
        from .classifier import split_label
        return [(split_label(n) or [n])[0] for n in self.names]


def _read_tsv(filename: str) -> List[Dict[str, str]]:
    text = resources.files("ovsam_core.text").joinpath("data", filename).read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))


@lru_cache(maxsize=1)
def lvis_classes() -> Vocabulary:
    """The 1203 LVIS v1 classes (mmdet order and spelling), split by frequency (novel = ``r``)."""
    rows = _read_tsv("lvis_v1_categories.tsv")
    rows.sort(key=lambda r: int(r["index"]))
    names = tuple(LVIS_MMDET_SPELLING.get(r["name"], r["name"]) for r in rows)
    freq = tuple(r["frequency"] for r in rows)
    split = tuple("novel" if f == "r" else "base" for f in freq)
    return Vocabulary("lvis", names, tuple(r["id"] for r in rows), split, freq)


@lru_cache(maxsize=1)
def coco_classes() -> Vocabulary:
    """The 80 COCO classes with upstream's synonym strings and the 48/17 (+15 other) split."""
    rows = _read_tsv("coco_ov_classes.tsv")
    rows.sort(key=lambda r: int(r["index"]))
    names = tuple(r["synonyms_as_used_for_text_embeddings"] for r in rows)
    return Vocabulary("coco", names, tuple(r["index"] for r in rows),
                      tuple(r["split_48_17"] for r in rows))


@lru_cache(maxsize=1)
def imagenet21k_classes() -> Vocabulary:
    """The 19,167 ImageNet-21k WordNet classes (comma-separated synonyms; no split)."""
    rows = _read_tsv("imagenet21k_classes.tsv")
    return Vocabulary("imagenet21k", tuple(r["synonyms"] for r in rows),
                      tuple(r["wnid"] for r in rows))


@lru_cache(maxsize=1)
def shapes_classes() -> Vocabulary:
    """The 8 synthetic shape classes of :mod:`ovsam_core.synthetic` (``ovsam-shapes``'s
    vocabulary), in category-id order, with their base/novel split."""
    from ..synthetic import CATEGORIES

    return Vocabulary("shapes", tuple(c.name for c in CATEGORIES), tuple(str(c.id) for c in CATEGORIES),
                      tuple(c.split for c in CATEGORIES))


VOCABULARIES: Dict[str, Callable[[], Vocabulary]] = {
    "lvis": lvis_classes,
    "coco": coco_classes,
    "imagenet21k": imagenet21k_classes,
    "shapes": shapes_classes,
}


def get_vocabulary(key: str) -> Vocabulary:
    """Return a shipped vocabulary by key (``'lvis'``, ``'coco'`` or ``'imagenet21k'``)."""
    try:
        return VOCABULARIES[key.lower()]()
    except KeyError:
        raise ValueError(f"unknown vocabulary {key!r}; choose one of {sorted(VOCABULARIES)} "
                         "or pass your own list of class names.") from None
