"""Unit tests of the vocabulary parser of ``ovsam_core.vocabulary`` (lists, ``.txt`` / ``.json`` /
``.yaml`` files, hierarchies, the shared text syntax) with exact messages. Part of the default
run and of ``bash tests/mutation/run.sh``."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ovsam_core.text.vocab_data import VOCABULARIES, Vocabulary
from ovsam_core.vocabulary import (VOCAB_FILE_SUFFIXES, VocabularyError, is_preset, load_vocabulary,
                                   looks_like_path, parse_vocabulary_text, vocabulary_from_file,
                                   vocabulary_from_list, vocabulary_to_text)

PRESETS = ", ".join(sorted(VOCABULARIES))
assert PRESETS.startswith("coco, imagenet21k, lvis")


def _err(fn, *a) -> str:
    with pytest.raises(VocabularyError) as e:
        fn(*a)
    return str(e.value)


def test_from_list_strips_names_keeps_order_and_numbers_ids():
    v = vocabulary_from_list(["  cat ", "dog,puppy", "Traffic light"])
    assert v == Vocabulary("custom", ("cat", "dog,puppy", "Traffic light"), ("0", "1", "2"), parents=None)
    assert vocabulary_from_list(["a"], key="mine").key == "mine"
    w = vocabulary_from_list(["a", "b"], parents=[None, 0])
    assert w.parents == (None, 0) and isinstance(w.parents, tuple)


def test_from_list_errors_exactly():
    assert _err(vocabulary_from_list, []) == "the vocabulary is empty: give at least one class name"
    assert _err(vocabulary_from_list, ["a", " ", "b"]) == \
        "class #1 has no name; remove empty entries from the vocabulary"
    assert _err(vocabulary_from_list, ["a", ",", ""]).startswith("class #1 has no name")
    assert _err(vocabulary_from_list, ["", "a"]).startswith("class #0 has no name")
    assert _err(vocabulary_from_list, ["cat", "dog", "Cat "]) == \
        "class 'Cat' appears twice (#0 and #2); merge duplicates into one line with synonyms"
    assert "(#1 and #2)" in _err(vocabulary_from_list, ["a", "b", "B"])


def test_txt_files_comments_blank_lines_and_synonyms(tmp_path):
    p = tmp_path / "v.txt"
    p.write_text("# my classes\ncat\n\n  dog, puppy  # young ones too\n#only a comment\nbird#x\n", "utf-8")
    v = vocabulary_from_file(p)
    assert v.names == ("cat", "dog, puppy", "bird") and v.parents is None and v.key == "custom"
    assert vocabulary_from_file(str(p)) == v
    (tmp_path / "v.TXT").write_text("x\n", "utf-8")
    assert vocabulary_from_file(tmp_path / "v.TXT").names == ("x",)


def test_file_errors(tmp_path):
    assert _err(vocabulary_from_file, tmp_path / "nope.txt") == f"vocabulary file not found: {tmp_path / 'nope.txt'}"
    assert _err(vocabulary_from_file, tmp_path) == f"vocabulary file not found: {tmp_path}"
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00bad")
    assert _err(vocabulary_from_file, bad).startswith(f"cannot read vocabulary file {bad}: ")
    j = tmp_path / "bad.json"
    j.write_text("{nope", "utf-8")
    assert _err(vocabulary_from_file, j).startswith(f"{j} is not valid JSON: ")
    y = tmp_path / "bad.yaml"
    y.write_text("a: [1, 2\nb: c: d\n", "utf-8")
    import yaml

    with pytest.raises(yaml.YAMLError) as yerr:
        yaml.safe_load(y.read_text("utf-8"))
    assert len(str(yerr.value).splitlines()) > 1
    assert _err(vocabulary_from_file, y) == f"{y} is not valid YAML: {str(yerr.value).splitlines()[0]}"
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n", "utf-8")
    assert _err(vocabulary_from_file, empty) == "the vocabulary is empty: give at least one class name"


def test_json_and_yaml_lists_objects_synonyms_and_hierarchy(tmp_path):
    data = {"classes": [
        "plain",
        {"name": "animal", "children": [
            {"name": "dog", "synonyms": ["puppy", "hound"]},
            {"name": "cat", "synonyms": "kitty", "children": ["kitten"]}]},
        {"name": "car", "parent": "plain"},
        {"name": "boat", "parent": 0},
        {"name": "van", "parent": " car "},
    ]}
    j = tmp_path / "v.json"
    j.write_text(json.dumps(data), "utf-8")
    v = vocabulary_from_file(j)
    assert v.names == ("plain", "animal", "dog,puppy,hound", "cat,kitty", "kitten", "car", "boat", "van")
    assert v.parents == (None, None, 1, 1, 3, 0, 0, 5) and v.key == "custom"
    y = tmp_path / "v.yml"
    y.write_text("- a\n- name: b\n  synonyms: [c]\n", "utf-8")
    w = vocabulary_from_file(y)
    assert w.names == ("a", "b,c") and w.parents is None
    y2 = tmp_path / "v.YAML"
    y2.write_text(json.dumps(data), "utf-8")
    assert vocabulary_from_file(y2) == v
    (tmp_path / "l.json").write_text(json.dumps(["x", "y"]), "utf-8")
    assert vocabulary_from_file(tmp_path / "l.json").names == ("x", "y")
    (tmp_path / "n.json").write_text(json.dumps([{"name": "x", "synonyms": None, "children": None}]), "utf-8")
    assert vocabulary_from_file(tmp_path / "n.json").names == ("x",)


def test_parent_lookup_by_first_synonym_and_by_split_label(tmp_path):
    j = tmp_path / "v.json"
    j.write_text(json.dumps([{"name": "Big_Dog", "synonyms": ["hound"]}, {"name": "pup", "parent": "big dog"},
                             {"name": "cub", "parent": "Big_Dog"}]), "utf-8")
    assert vocabulary_from_file(j).parents == (None, 0, 0)


def test_structured_errors(tmp_path):
    def write(obj) -> Path:
        p = tmp_path / "s.json"
        p.write_text(json.dumps(obj), "utf-8")
        return p

    p = write({"names": ["a"]})
    assert _err(vocabulary_from_file, p) == f"{p}: expected a list of classes (or {{'classes': [...]}})"
    assert _err(vocabulary_from_file, write("a")).endswith("expected a list of classes (or {'classes': [...]})")
    assert _err(vocabulary_from_file, write([1])) == \
        f"{p}: each class must be a string or an object with a 'name'; got 1"
    assert _err(vocabulary_from_file, write([{"name": 3}])).endswith("got {'name': 3}")
    assert _err(vocabulary_from_file, write([{"synonyms": ["a"]}])).endswith("got {'synonyms': ['a']}")
    assert _err(vocabulary_from_file, write(["a", {"name": "b", "parent": "zebra"}])) == \
        f"{p}: parent 'zebra' is not a class of this vocabulary"
    assert "parent 1.5 is not" in _err(vocabulary_from_file, write(["a", {"name": "b", "parent": 1.5}]))


def test_load_vocabulary_sources(tmp_path, monkeypatch):
    v = vocabulary_from_list(["a"])
    assert load_vocabulary(v) is v
    assert load_vocabulary("coco").key == "coco" and load_vocabulary("COCO").key == "coco"
    assert load_vocabulary(["a", "b"]).names == ("a", "b") and load_vocabulary(("a",)).names == ("a",)
    f = tmp_path / "v.txt"
    f.write_text("x\ny\n", "utf-8")
    assert load_vocabulary(f).names == ("x", "y") and load_vocabulary(str(f)).names == ("x", "y")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_vocabulary("~/v.txt").names == ("x", "y")
    assert _err(load_vocabulary, str(tmp_path / "missing.txt")) == \
        (f"vocabulary file not found: {tmp_path / 'missing.txt'} (neither a preset "
         "(coco, imagenet21k, lvis, shapes) nor an existing file; check the path)")
    assert _err(load_vocabulary, "zebra") == \
        f"vocabulary 'zebra' is neither a preset ({PRESETS}) nor an existing file"


def test_is_preset_and_looks_like_path():
    assert is_preset("coco") and is_preset(" LVIS ") and is_preset("imagenet21k")
    assert not is_preset("cocoa") and not is_preset(None) and not is_preset(["coco"])
    assert VOCAB_FILE_SUFFIXES == (".txt", ".json", ".yaml", ".yml")
    for t in ["~v", "X/y.txt", "Xv.txt", "a/b", "./x", ".hidden", "~/v", "classes.txt", "C.JSON", "v.yaml", "v.yml", f"a{os.sep}b", " dir/ "]:
        assert looks_like_path(t), t
    for t in ["", "   ", "cat", "cat,dog", "a/b,c", "x.txt;y", "dog|puppy/x", "a/b\nc", "json", "yaml file"]:
        assert not looks_like_path(t), t


def test_parse_vocabulary_text(tmp_path):
    assert parse_vocabulary_text("") is None and parse_vocabulary_text("  \n ") is None
    assert parse_vocabulary_text(" LVIS ") == "lvis" and parse_vocabulary_text("coco") == "coco"
    assert parse_vocabulary_text("dog|puppy, cat;traffic light\nbird") == ["dog,puppy", "cat", "traffic light", "bird"]
    assert parse_vocabulary_text(" a | b |, ,c") == ["a,b", "c"]
    assert parse_vocabulary_text("cat") == ["cat"]
    f = tmp_path / "v.txt"
    f.write_text("x\n", "utf-8")
    assert parse_vocabulary_text(f" {f} ") == str(f)
    bad = tmp_path / "bad.json"
    bad.write_text("[1]", "utf-8")
    assert "each class must be" in _err(parse_vocabulary_text, str(bad))
    d = tmp_path / "folder"
    d.mkdir()
    assert "is not a vocabulary folder" in _err(parse_vocabulary_text, str(d))
    assert _err(parse_vocabulary_text, str(tmp_path / "no.txt")) == (
        f"vocabulary file not found: {tmp_path / 'no.txt'} (no such file or folder; check the path, or give "
        f"a preset: {PRESETS})")
    assert "appears twice" in _err(parse_vocabulary_text, "cat, dog, cat")
    assert "empty" in _err(parse_vocabulary_text, ", ;")


def test_vocabulary_to_text_inverts_the_list_form():
    names = ["dog, puppy", "cat", " traffic light ", "a,,b"]
    assert vocabulary_to_text(names) == "dog|puppy, cat, traffic light, a|b"
    assert parse_vocabulary_text(vocabulary_to_text(names)) == ["dog,puppy", "cat", "traffic light", "a,b"]
    assert vocabulary_to_text([]) == ""


def test_yaml_without_pyyaml_says_how_to_install(tmp_path, monkeypatch):
    import sys

    y = tmp_path / "v.yaml"
    y.write_text("- a\n", "utf-8")
    monkeypatch.setitem(sys.modules, "yaml", None)
    assert _err(vocabulary_from_file, y) == "YAML vocabularies need PyYAML: pip install pyyaml"
