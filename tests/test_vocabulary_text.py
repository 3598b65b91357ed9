"""The one vocabulary text syntax and the "mistyped path is an error" rule (ovsam_core.vocabulary)."""
import json

import pytest

from ovsam_core import (VocabularyError, load_vocabulary, looks_like_path, parse_vocabulary_text,
                        vocabulary_to_text)


@pytest.mark.parametrize("text", ["/nonexistent/my_vocab.txt", "my_vocab.txt", "./vocab", "~/classes.yaml",
                                  "data/classes", "VOCAB.JSON"])
def test_mistyped_paths_are_errors_not_class_names(text):
    assert looks_like_path(text)
    with pytest.raises(VocabularyError, match="vocabulary file not found"):
        parse_vocabulary_text(text)


def test_core_loader_says_file_not_found_for_a_path():
    with pytest.raises(VocabularyError, match="vocabulary file not found: /nonexistent/my_vocab.txt"):
        load_vocabulary("/nonexistent/my_vocab.txt")


@pytest.mark.parametrize("text", ["cat", "traffic light", "dog|puppy, cat", "a/b, c", "cat; dog"])
def test_names_are_not_paths(text):
    assert not looks_like_path(text)


def test_names_presets_and_files(tmp_path):
    assert parse_vocabulary_text("  ") is None
    assert parse_vocabulary_text("COCO") == "coco"
    assert parse_vocabulary_text("dog|puppy, cat;traffic light\nbus") == ["dog,puppy", "cat", "traffic light", "bus"]
    f = tmp_path / "v.txt"
    f.write_text("red circle\ngreen square, lime square\n")
    assert parse_vocabulary_text(str(f)) == str(f)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(VocabularyError, match="not valid JSON"):
        parse_vocabulary_text(str(bad))
    with pytest.raises(VocabularyError, match="appears twice"):
        parse_vocabulary_text("cat, Cat")
    with pytest.raises(VocabularyError, match="not a vocabulary folder"):
        parse_vocabulary_text(str(tmp_path))


def test_text_round_trip():
    names = ["dog,puppy", "cat", "traffic light"]
    assert parse_vocabulary_text(vocabulary_to_text(names)) == names
    assert json.dumps(vocabulary_to_text(names)) == '"dog|puppy, cat, traffic light"'
