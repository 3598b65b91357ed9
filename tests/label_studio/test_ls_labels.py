"""Label config parsing and the mapping of vocabulary classes onto project labels."""
from __future__ import annotations

from ls_fixtures import *  # noqa: F401,F403 - fixtures (and the skip without the label-studio extra)

import numpy as np
import pytest

from ovsam_core import LabelMapper
from ovsam_plugins.label_studio.labels import PROMPT_TAGS, LabelConfigError, ProjectLabel, parse_label_config

from ls_helpers import config_xml, control


def test_controls_prompts_and_outputs():
    cfg = parse_label_config(config_xml())
    assert [c.name for c in cfg.controls if c.tag in PROMPT_TAGS] == ["kp", "prompt_box", "box"]
    assert [c.name for c in cfg.output_controls] == ["brush", "poly", "box"]  # prompt_box has ovsam_skip
    c = control(cfg, "brush")
    assert c.kind == "brush" and c.to_name == "image" and c.image_key == "image"
    assert [lab.name for lab in c.labels] == ["circle", "square", "triangle"]
    assert control(cfg, "kp").smart


def test_smart_rectangle_is_an_output_only_without_brush_or_polygon():
    lab = '<Label value="a"/>'
    both = (f'<View><Image name="img" value="$url"/><RectangleLabels name="r" toName="img" smart="true">{lab}'
            f'</RectangleLabels><BrushLabels name="b" toName="img">{lab}</BrushLabels></View>')
    assert [c.name for c in parse_label_config(both).output_controls] == ["b"]
    boxes = (f'<View><Image name="img" value="$url"/><KeyPointLabels name="k" toName="img" smart="true">{lab}'
             f'</KeyPointLabels><RectangleLabels name="r" toName="img" smart="true">{lab}</RectangleLabels></View>')
    cfg = parse_label_config(boxes)
    assert [c.name for c in cfg.output_controls] == ["r"] and cfg.image_key("img") == "url"
    forced = both.replace('smart="true"', 'smart="true" ovsam_output="true"')
    assert [c.name for c in parse_label_config(forced).output_controls] == ["r", "b"]


def test_labels_alias_and_predicted_values():
    cfg = parse_label_config('<View><Image name="i" value="$image"/><BrushLabels name="b" toName="i">'
                             '<Label value="Kitty cat" alias="K" predicted_values="cat, kitten"/>'
                             '<Label value="Dog"/></BrushLabels></View>')
    k, d = control(cfg, "b").labels
    assert (k.name, k.text, k.synonyms) == ("K", "Kitty cat", ("cat", "kitten"))
    assert k.vocab_entry == "Kitty cat,cat,kitten" and d.vocab_entry == "Dog"
    assert set(k.keys) == {"kitty cat", "k", "cat", "kitten"}


def test_dynamic_labels():
    cfg = parse_label_config('<View><Image name="i" value="$image"/><PolygonLabels name="p" toName="i" '
                             'value="$options"><Label value="fixed"/></PolygonLabels></View>')
    c = control(cfg, "p")
    assert c.dynamic_field == "options"
    labs = c.labels_for({"options": ["a", {"value": "b", "alias": "B"}, {"value": "c", "predicted_values": "x,y"},
                                     {"html": "no value"}, 3, "a"]})
    assert [(lab.name, lab.text, lab.synonyms) for lab in labs] == [
        ("fixed", "fixed", ()), ("a", "a", ()), ("B", "b", ()), ("c", "c", ("x", "y"))]
    assert [lab.name for lab in c.labels_for({})] == ["fixed"]


@pytest.mark.parametrize("config,msg", [
    ("", "empty"), ("<View>", "parse"), ('<!DOCTYPE v [<!ENTITY e SYSTEM "file:///etc/passwd">]><View>&e;</View>', "DOCTYPE"),
    ('<View><Text name="t" value="$t"/><Choices name="c" toName="t"><Choice value="x"/></Choices></View>', "no output"),
    ('<View><Image name="i" value="$image"/><BrushLabels name="b" toName="i"></BrushLabels></View>', "no <Label>"),
    ('<View><Image name="i" value="http://x/y.png"/><BrushLabels name="b" toName="i"><Label value="a"/></BrushLabels></View>',
     "no output"),
])
def test_unusable_configs(config, msg):
    with pytest.raises(LabelConfigError, match=msg):
        parse_label_config(config)


def test_mapper_own_vocabulary():
    labs = [ProjectLabel("Cat", "Cat"), ProjectLabel("cat", "cat"), ProjectLabel("D", "Dog", ("puppy",)),
            ProjectLabel("/", "/")]
    m = LabelMapper(labs)
    assert m.vocabulary() == ["Cat", "Dog,puppy"]  # case-duplicates merged, unembeddable dropped
    p = m.label_probs([("cat", 0.7), ("dog", 0.3)])
    assert p[m.index["Cat"]] == pytest.approx(0.7) and p[m.index["cat"]] == pytest.approx(0.7)
    assert p[m.index["D"]] == pytest.approx(0.3) and p[m.index["/"]] == 0
    assert m.find("DOG").name == "D" and m.find("puppy").name == "D" and m.find("cow") is None


def test_mapper_preset_vocabulary_sums_synonym_classes():
    labs = [ProjectLabel("Vehicle", "Vehicle", ("car", "truck")), ProjectLabel("Person", "Person"),
            ProjectLabel("Unicorn", "Unicorn")]
    classes = ["person,human", "car,automobile", "truck", "bicycle"]
    m = LabelMapper(labs, classes)
    assert m.mapped
    p = m.label_probs([("person", 0.1), ("car", 0.5), ("truck", 0.2), ("bicycle", 0.2)])
    np.testing.assert_allclose(p, [0.7, 0.1, 0.0])
    assert not LabelMapper([ProjectLabel("x", "x")], classes).mapped
