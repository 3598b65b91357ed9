"""ovsam_core.hosts.labelmap: vocabulary classes -> a host's labels."""
import numpy as np

from ovsam_core import HostLabel, LabelMapper, normalise


def test_normalise_synonyms_case_and_underscores():
    assert normalise("Traffic_Light, stop  light") == ["traffic light", "stop light"]


def test_classes_map_to_labels_by_text_name_or_synonym():
    labels = [HostLabel("K", "Kitty cat", ("cat", "kitten")), HostLabel("Dog", "Dog")]
    m = LabelMapper(labels, ["cat,kitty", "dog,puppy", "car"])
    assert m.mapped
    p = m.label_probs([("cat", 0.5), ("dog", 0.3), ("car", 0.2)])
    np.testing.assert_allclose(p, [0.5, 0.3])
    assert m.find("kitten").name == "K" and m.find("k").name == "K" and m.find("zebra") is None
    assert LabelMapper(labels).vocabulary() == ["Kitty cat,cat,kitten", "Dog"]


def test_unmapped_vocabulary():
    m = LabelMapper([HostLabel("a", "a")], ["zebra"])
    assert not m.mapped and m.label_probs([("zebra", 1.0)]).tolist() == [0.0]
