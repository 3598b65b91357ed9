"""Vocabulary inputs and their JSON records (`ovsam_core.hosts.vocab_source`)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ovsam_core import (Vocabulary, VocabularyError, embedded_source, vocabulary_from_record, vocabulary_record,
                        vocabulary_size, vocabulary_source)


def test_sources_from_python_values(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text("zebra\nlion, big cat\n")
    assert vocabulary_source(None) is None and vocabulary_source("COCO") == "coco"
    assert vocabulary_source(" cat, dog|puppy ") == ["cat", "dog,puppy"]
    assert vocabulary_source(Path(f)) == str(f) and vocabulary_source(["a,b", "c"]) == ["a,b", "c"]
    with pytest.raises(VocabularyError, match="not found"):
        vocabulary_source(Path("/nonexistent/v.txt"))
    with pytest.raises(VocabularyError, match="not found"):
        vocabulary_source("/nonexistent/v.txt")
    with pytest.raises(VocabularyError):
        vocabulary_source(["a", "a"])


def test_records_round_trip_and_sizes(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text("zebra\nlion, big cat\n")
    tree = Vocabulary("mine", ("animal", "dog"), ("0", "1"), parents=(None, 0))
    for src in (None, "lvis", str(f), ["x", "y,z"], tree):
        back = vocabulary_from_record(vocabulary_record(src))
        assert back == src if not isinstance(src, Vocabulary) else (back.names, back.parents) == (tree.names, tree.parents)
    assert embedded_source(str(f)) == ["zebra", "lion, big cat"] and embedded_source("coco") == "coco"
    assert vocabulary_size(None) == 0 and vocabulary_size(str(f)) == 2 and vocabulary_size("coco") == 80
