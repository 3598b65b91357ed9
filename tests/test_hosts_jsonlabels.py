"""ovsam_core.hosts.jsonlabels: host labels from JSON (dynamic labels) and comma-separated text."""
from __future__ import annotations

import pytest

from ovsam_core import HostLabel, label_from_json, labels_from_json, merge_labels, split_names


@pytest.mark.parametrize("raw, out", [("puppy, hound", ("puppy", "hound")), (" a ,, b ,", ("a", "b")),
                                      (["x ", "", 3], ("x", "3")), (("y",), ("y",)), (None, ()), (5, ()),
                                      ("", ())])
def test_split_names(raw, out):
    assert split_names(raw) == out


def test_label_from_json_uses_the_alias_as_name_and_the_value_as_text():
    assert label_from_json("cat") == HostLabel("cat", "cat")
    assert label_from_json({"value": "dog", "alias": "Dog", "predicted_values": "puppy, hound"}) == \
        HostLabel("Dog", "dog", ("puppy", "hound"))
    assert label_from_json({"value": "car", "predicted_values": ["auto"]}) == HostLabel("car", "car", ("auto",))
    for bad in ({"alias": "x"}, {"value": 3}, 7, None, ["cat"]):
        assert label_from_json(bad) is None


def test_labels_from_json_takes_one_item_or_a_list_and_keeps_each_name_once():
    assert labels_from_json("cat") == (HostLabel("cat", "cat"),)
    assert labels_from_json({"value": "dog"}) == (HostLabel("dog", "dog"),)
    got = labels_from_json(["cat", {"value": "dog", "predicted_values": "puppy"}, 3, {"value": "cat", "alias": "x"},
                            "cat"])
    assert got == (HostLabel("cat", "cat"), HostLabel("dog", "dog", ("puppy",)), HostLabel("x", "cat"))
    assert labels_from_json(None) == () and labels_from_json(12) == ()


def test_merge_labels_first_wins():
    a, b = HostLabel("cat", "cat"), HostLabel("cat", "feline")
    assert merge_labels([a], [b, HostLabel("dog", "dog")]) == (a, HostLabel("dog", "dog"))
    assert merge_labels() == ()
