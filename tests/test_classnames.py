"""Written class names and host labels from names (`ovsam_core.hosts.classnames`), shared predictors (`ovsam_core.hosts.shared`)."""
from __future__ import annotations

import pytest

from ovsam_core import (HostLabel, VocabularyError, get_vocabulary, labels_from_classes, labels_from_names,
                        shared_predictor, written_names)


def test_labels_from_names_keep_spelling_and_synonyms():
    assert labels_from_names(["Dog, puppy ", "traffic light", " ", "a,,b"]) == [
        HostLabel("Dog", "Dog", ("puppy",)), HostLabel("traffic light", "traffic light"), HostLabel("a", "a", ("b",))]
    assert HostLabel("dog", "dog", ("puppy",)).vocab_entry == "dog,puppy"


def test_written_names_of_a_vocabulary():
    names, display = written_names(get_vocabulary("lvis"))
    assert names[0] == "aerosol_can" and display["aerosol can"] == "aerosol_can"
    names, display = written_names(get_vocabulary("coco"))
    assert "traffic light" in names and display["traffic light"] == "traffic light"


def test_shared_predictor_is_loaded_once_per_settings():
    a = shared_predictor("ovsam-test", device="cpu")
    assert shared_predictor("ovsam-test", device="cpu") is a
    assert shared_predictor("ovsam-test", device="cpu", dtype="bf16") is not a


def test_labels_from_classes_reads_lists_text_presets_and_files(tmp_path):
    assert labels_from_classes(None) is None and labels_from_classes("  ") is None and labels_from_classes([]) is None
    assert labels_from_classes(["dog,puppy", "cat"]) == [HostLabel("dog", "dog", ("puppy",)), HostLabel("cat", "cat")]
    assert labels_from_classes("dog|puppy, traffic light") == [HostLabel("dog", "dog", ("puppy",)),
                                                               HostLabel("traffic light", "traffic light")]
    coco = labels_from_classes("coco")
    assert len(coco) == 80 and HostLabel("traffic light", "traffic light") in coco
    f = tmp_path / "classes.txt"
    f.write_text("red circle\ngreen square\n")
    assert [lab.name for lab in labels_from_classes(str(f))] == ["red circle", "green square"]
    with pytest.raises(VocabularyError):
        labels_from_classes(str(tmp_path / "missing.txt"))   # a mistyped path is never a class name
