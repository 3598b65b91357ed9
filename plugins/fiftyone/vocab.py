"""Vocabularies for FiftyOne users: one text syntax for the App and Python, stored on datasets.

Text (operator forms, the command line) follows :func:`ovsam_core.parse_vocabulary_text` (a
preset, a vocabulary file or ``vocab build`` folder, or ``"dog|puppy, cat"``), plus
``@prompt_labels``: the distinct labels of the prompt field (closed-set evaluation). In Python a
list of names works too (there a comma inside a name separates synonyms).
:func:`set_vocabulary` stores a vocabulary in ``dataset.info["ovsam"]``; labelling uses it when
no vocabulary is given.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from ovsam_core import (VocabInput, VocabularyError, embedded_source, vocabulary_from_record, vocabulary_record,
                        vocabulary_size, vocabulary_source)

from .auto import field_classes
from .store import get_info, set_info

PROMPT_LABELS = "@prompt_labels"
describe, from_record = vocabulary_record, vocabulary_from_record


def parse_vocabulary(value: VocabInput, samples=None, prompt_field: Optional[str] = None):
    """Text / list / path -> a source ``ovsam_core`` accepts (None stays None); a path that does
    not exist is an error, never a class name.

    Raises:
        VocabularyError: a missing or unreadable file, a bad list, or ``@prompt_labels`` without labels.
    """
    if isinstance(value, str) and value.strip() == PROMPT_LABELS:
        if samples is None or not prompt_field:
            raise VocabularyError(f"{PROMPT_LABELS} needs a dataset and a prompt field")
        from .prompts import check_prompt_field

        check_prompt_field(samples, prompt_field)
        try:
            return field_classes(samples, prompt_field)
        except ValueError as e:
            raise VocabularyError(f"{PROMPT_LABELS}: {e}") from None
    return vocabulary_source(value)


def set_vocabulary(dataset, vocabulary: VocabInput, prompt_field: Optional[str] = None) -> Dict[str, Any]:
    """Store a vocabulary on the dataset (``dataset.info["ovsam"]["vocabulary"]``, persisted).

    A file's classes are copied into the dataset, so the dataset keeps working without the file;
    a ``vocab build`` folder and presets are stored by name. ``None`` removes the vocabulary.

    Returns:
        ``{"vocabulary": record, "num_classes": int}``.
    """
    source = embedded_source(parse_vocabulary(vocabulary, dataset, prompt_field))
    rec = describe(source)
    set_info(dataset, "vocabulary", None, None if source is None else rec)
    return {"vocabulary": rec, "num_classes": vocabulary_size(source)}


def get_vocabulary(dataset):
    """The vocabulary stored by :func:`set_vocabulary` (a source for ``ovsam_core``), or None."""
    return from_record(get_info(dataset, "vocabulary"))
