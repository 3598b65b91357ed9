"""Vocabularies for FiftyOne users: one text syntax for the App and Python, stored on datasets.

A vocabulary given as **text** (operator forms, the command line) is one of:

* a preset: ``coco``, ``lvis``, ``imagenet21k``;
* the path of a vocabulary file (``.txt``/``.json``/``.yaml``, see ``ovsam_core``) or of a folder
  written by ``ovsam vocab build``;
* ``@prompt_labels``: the distinct labels of the prompt field (closed-set evaluation);
* class names separated by commas; synonyms of one class separated by ``|``
  (``"dog|puppy, cat, traffic light"``).

In Python a list of names is passed to ``ovsam_core`` unchanged (there, a comma inside a name
separates synonyms). :func:`set_vocabulary` stores a vocabulary in ``dataset.info["ovsam"]``;
:func:`~ovsam_plugins.fiftyone.label_with_prompts` uses it when no vocabulary is given.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ovsam_core import (Vocabulary, VocabularyError, is_preset, load_vocabulary, load_vocabulary_bundle,
                        parse_vocabulary_text)

from .store import get_info, set_info

PROMPT_LABELS = "@prompt_labels"

VocabInput = Union[None, str, os.PathLike, Sequence[str], Vocabulary]


def parse_vocabulary(value: VocabInput, samples=None, prompt_field: Optional[str] = None):
    """Text / list / path -> a source ``ovsam_core`` accepts (None stays None).

    Text follows :func:`ovsam_core.parse_vocabulary_text` (one syntax for every host); a path
    that does not exist is an error, never a class name.

    Raises:
        VocabularyError: a missing or unreadable file, a bad list, or ``@prompt_labels`` without labels.
    """
    if value is None or isinstance(value, Vocabulary):
        return value
    if isinstance(value, os.PathLike):
        if not Path(value).expanduser().exists():
            raise VocabularyError(f"vocabulary file not found: {value} (no such file or folder; check the path)")
        return parse_vocabulary_text(str(value))
    if not isinstance(value, str):
        names = [str(v) for v in value]
        load_vocabulary(names)  # validates: empty names, duplicates
        return names
    if value.strip() == PROMPT_LABELS:
        if samples is None or not prompt_field:
            raise VocabularyError(f"{PROMPT_LABELS} needs a dataset and a prompt field")
        return prompt_label_names(samples, prompt_field)
    return parse_vocabulary_text(value)


def prompt_label_names(samples, prompt_field: str) -> List[str]:
    """Distinct labels of a Detections/Keypoints field, sorted."""
    from .prompts import check_prompt_field

    kind = check_prompt_field(samples, prompt_field)
    name = samples.get_field(prompt_field).document_type.__name__
    path = {"Detections": ".detections", "Keypoints": ".keypoints"}.get(name, "")
    labels = sorted(v for v in samples.distinct(f"{prompt_field}{path}.label") if v)
    if not labels:
        raise VocabularyError(f"the {kind} prompts of {prompt_field!r} have no labels to build a vocabulary from")
    return labels


def describe(source) -> Dict[str, Any]:
    """A JSON-serialisable record of a vocabulary source (stored with runs and on datasets)."""
    if source is None:
        return {"default": True}
    if isinstance(source, str):
        return {"preset": source} if is_preset(source) else {"path": source}
    if isinstance(source, Vocabulary):
        return {"names": list(source.names), "key": source.key,
                "parents": list(source.parents) if source.parents else None}
    return {"names": list(source)}


def from_record(rec: Optional[Dict[str, Any]]):
    """Inverse of :func:`describe`."""
    if not rec or rec.get("default"):
        return None
    if "preset" in rec:
        return rec["preset"]
    if "path" in rec:
        return rec["path"]
    names = tuple(rec["names"])
    if rec.get("parents"):
        return Vocabulary(rec.get("key", "custom"), names, tuple(str(i) for i in range(len(names))),
                          parents=tuple(rec["parents"]))
    return list(names)


def set_vocabulary(dataset, vocabulary: VocabInput, prompt_field: Optional[str] = None) -> Dict[str, Any]:
    """Store a vocabulary on the dataset (``dataset.info["ovsam"]["vocabulary"]``, persisted).

    A file's classes are copied into the dataset, so the dataset keeps working without the file;
    a ``vocab build`` folder and presets are stored by name. ``None`` removes the vocabulary.

    Returns:
        ``{"vocabulary": record, "num_classes": int}``.
    """
    source = parse_vocabulary(vocabulary, dataset, prompt_field)
    if isinstance(source, str) and not is_preset(source) and Path(source).is_file():
        source = load_vocabulary(source)
        if not source.parents:
            source = list(source.names)
    rec = describe(source)
    set_info(dataset, "vocabulary", None, None if source is None else rec)
    return {"vocabulary": rec, "num_classes": num_classes(source)}


def get_vocabulary(dataset):
    """The vocabulary stored by :func:`set_vocabulary` (a source for ``ovsam_core``), or None."""
    return from_record(get_info(dataset, "vocabulary"))


def num_classes(source) -> int:
    if source is None:
        return 0
    if isinstance(source, str) and Path(source).is_dir():
        return len(load_vocabulary_bundle(source)[0])
    return len(load_vocabulary(source))

