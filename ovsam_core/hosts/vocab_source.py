"""Vocabulary sources as a host receives and stores them.

A host gets a vocabulary from Python (``None``, a :class:`Vocabulary`, a path, a list of names)
or as text (:func:`~ovsam_core.vocabulary.parse_vocabulary_text`), and keeps the choice with
its runs or datasets as JSON. :func:`vocabulary_source` turns any input into a source the
:class:`~ovsam_core.Predictor` accepts (a missing path is an error, never a class name);
:func:`vocabulary_record` / :func:`vocabulary_from_record` are a JSON round trip;
:func:`embedded_source` copies a file's classes so that the record does not depend on the file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ..text.vocab_data import Vocabulary
from ..vocabulary import (VocabularyError, is_preset, load_vocabulary, load_vocabulary_bundle,
                         parse_vocabulary_text)

VocabInput = Union[None, str, "os.PathLike[str]", Sequence[str], Vocabulary]


def vocabulary_source(value: VocabInput) -> Union[None, str, List[str], Vocabulary]:
    """A source for the predictor: ``None`` and vocabularies unchanged, text by
    :func:`parse_vocabulary_text`, a path checked, a list of names validated.

    Raises:
        VocabularyError: a path that does not exist, an unreadable file, a bad list.
    """
    if value is None or isinstance(value, Vocabulary):
        return value
    if isinstance(value, os.PathLike):
        if not Path(value).expanduser().exists():
            raise VocabularyError(f"vocabulary file not found: {value} (no such file or folder; check the path)")
        return parse_vocabulary_text(str(value))
    if isinstance(value, str):
        return parse_vocabulary_text(value)
    names = [str(v) for v in value]
    load_vocabulary(names)  # validates: empty names, duplicates
    return names


def vocabulary_record(source) -> Dict[str, Any]:
    """A JSON-serialisable record of a source (``{"default": True}`` for ``None``)."""
    if source is None:
        return {"default": True}
    if isinstance(source, str):
        return {"preset": source} if is_preset(source) else {"path": source}
    if isinstance(source, Vocabulary):
        return {"names": list(source.names), "key": source.key,
                "parents": list(source.parents) if source.parents else None}
    return {"names": list(source)}


def vocabulary_from_record(rec: Optional[Dict[str, Any]]):
    """Inverse of :func:`vocabulary_record` (``None``/empty: ``None``)."""
    if not rec or rec.get("default"):
        return None
    if "preset" in rec or "path" in rec:
        return rec.get("preset") or rec["path"]
    names = tuple(rec["names"])
    if rec.get("parents"):
        return Vocabulary(rec.get("key", "custom"), names, tuple(str(i) for i in range(len(names))),
                          parents=tuple(rec["parents"]))
    return list(names)


def embedded_source(source):
    """A vocabulary file's classes (names, or the :class:`Vocabulary` if hierarchical) instead
    of its path; other sources unchanged."""
    if isinstance(source, str) and not is_preset(source) and Path(source).is_file():
        vocab = load_vocabulary(source)
        return vocab if vocab.parents else list(vocab.names)
    return source


def vocabulary_size(source) -> int:
    """Number of classes of a source (0 for ``None``)."""
    if source is None:
        return 0
    if isinstance(source, str) and Path(source).is_dir():
        return len(load_vocabulary_bundle(source)[0])
    return len(load_vocabulary(source))
