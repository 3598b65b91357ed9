"""Unit tests of ``ovsam_core.prompts`` (exact messages, clipping and boundaries).

Part of the default run; also the test set of the mutation run (``bash tests/mutation/run.sh``).
"""
from __future__ import annotations

import math

import pytest

from ovsam_core.prompts import Prompt, PromptError


def test_from_box_stores_floats_in_order():
    p = Prompt.from_box(1, 2, 3, 4)
    assert p.box == (1.0, 2.0, 3.0, 4.0) and all(type(v) is float for v in p.box)
    assert p.points == () and p.labels == ()


def test_from_points_labels_default_explicit_and_override():
    p = Prompt.from_points([(1, 2), (3, 4, 0), [5, 6, 1]])
    assert p.points == ((1.0, 2.0), (3.0, 4.0), (5.0, 6.0)) and p.labels == (1, 0, 1)
    assert all(type(v) is float for xy in p.points for v in xy) and all(type(v) is int for v in p.labels)
    q = Prompt.from_points([(1, 2), (3, 4)], labels=[0, 1])
    assert q.labels == (0, 1) and q.box is None
    assert Prompt.from_points([(1, 2, 1)], labels=[0]).labels == (0,)
    assert Prompt.from_points([]) == Prompt()


@pytest.mark.parametrize("bad", [(1,), (1, 2, 3, 4)])
def test_from_points_rejects_other_lengths(bad):
    with pytest.raises(PromptError, match=r"^a point is \(x, y\) or \(x, y, label\), got " + repr(tuple(bad)).replace("(", r"\(").replace(")", r"\)") + "$"):
        Prompt.from_points([(1, 2), bad])


def test_kind_groups_by_point_count_and_box():
    assert Prompt.from_box(0, 0, 1, 1).kind == (0, True)
    assert Prompt.from_points([(1, 1), (2, 2)]).kind == (2, False)
    assert Prompt(points=((1.0, 1.0),), labels=(1,), box=(0, 0, 2, 2)).kind == (1, True)


def test_to_json():
    assert Prompt().to_json() == {}
    assert Prompt.from_box(1, 2, 3, 4).to_json() == {"box": [1.0, 2.0, 3.0, 4.0]}
    assert Prompt.from_points([(1, 2), (3, 4, 0)]).to_json() == {"points": [[1.0, 2.0, 1], [3.0, 4.0, 0]]}
    both = Prompt(points=((5.0, 6.0),), labels=(0,), box=(0.0, 0.0, 9.0, 9.0)).to_json()
    assert both == {"points": [[5.0, 6.0, 0]], "box": [0.0, 0.0, 9.0, 9.0]}


def _err(p: Prompt, h: int = 90, w: int = 160) -> str:
    with pytest.raises(PromptError) as e:
        p.validated(h, w)
    return str(e.value)


def test_validation_messages_exactly():
    assert _err(Prompt()) == "empty prompt: give at least one point or a box"
    assert _err(Prompt(points=((1.0, 1.0),), labels=())) == "1 points but 0 labels"
    assert _err(Prompt(points=((1.0, 1.0), (2.0, 2.0)), labels=(1, 2))) == \
        "point labels must be 1 (positive) or 0 (negative), got [1, 2]"
    assert _err(Prompt(points=((1.0, 1.0),), labels=(-1,))).endswith("got [-1]")
    assert _err(Prompt.from_points([(1, 1, 0), (2, 2, 0)])) == \
        "a prompt with only negative points has no object; add a positive point or a box"
    assert _err(Prompt.from_points([(float("nan"), 1)])) == "point (nan, 1.0) is not a finite number"
    assert _err(Prompt.from_points([(1, float("inf"))])) == "point (1.0, inf) is not a finite number"
    assert _err(Prompt.from_points([(161, 5)])) == "point (161, 5) is outside the 160x90 image"
    assert _err(Prompt.from_points([(5, 90.5)])) == "point (5, 90.5) is outside the 160x90 image"
    assert _err(Prompt.from_points([(-0.5, 5)])) == "point (-0.5, 5) is outside the 160x90 image"
    assert _err(Prompt.from_points([(5, -1)])) == "point (5, -1) is outside the 160x90 image"
    assert _err(Prompt(box=(0.0, 0.0, float("nan"), 1.0))) == "box must be 4 finite numbers x0,y0,x1,y1, got (0.0, 0.0, nan, 1.0)"
    assert _err(Prompt(box=(float("-inf"), 0.0, 1.0, 1.0))).startswith("box must be 4 finite numbers")
    assert _err(Prompt(box=(0.0, 0.0, 1.0)))== "box must be 4 finite numbers x0,y0,x1,y1, got (0.0, 0.0, 1.0)"
    assert _err(Prompt.from_box(5, 1, 5, 9)) == "box 5,1,5,9 is empty: need x0 < x1 and y0 < y1"
    assert _err(Prompt.from_box(1, 5, 9, 5)) == "box 1,5,9,5 is empty: need x0 < x1 and y0 < y1"
    assert _err(Prompt.from_box(6, 1, 5, 9)).startswith("box 6,1,5,9 is empty")
    assert _err(Prompt.from_box(-5, 1, 0, 9)) == "box -5,1,0,9 is outside the 160x90 image"
    assert _err(Prompt.from_box(1, -5, 9, 0)) == "box 1,-5,9,0 is outside the 160x90 image"
    assert _err(Prompt.from_box(160, 1, 170, 9)) == "box 160,1,170,9 is outside the 160x90 image"
    assert _err(Prompt.from_box(1, 90, 9, 95)) == "box 1,90,9,95 is outside the 160x90 image"


def test_negative_points_with_a_box_are_fine_and_order_of_checks():
    p = Prompt(points=((1.0, 1.0),), labels=(0,), box=(0.0, 0.0, 5.0, 5.0))
    assert p.validated(90, 160) == p
    # labels are checked before finiteness, finiteness before the image bounds
    assert "labels must be" in _err(Prompt(points=((float("nan"), 1.0),), labels=(3,)))
    assert "not a finite" in _err(Prompt(points=((float("nan"), 1e9),), labels=(1,)))
    assert "finite" in _err(Prompt(points=((1.0, 1.0),), labels=(1,), box=(0.0, 0.0, math.inf, 1.0)))


def test_boundaries_are_inside():
    for x, y in [(0, 0), (160, 90), (0, 90), (160, 0)]:
        assert Prompt.from_points([(x, y)]).validated(90, 160).points == ((float(x), float(y)),)
    assert Prompt.from_box(0, 0, 160, 90).validated(90, 160).box == (0.0, 0.0, 160.0, 90.0)
    assert Prompt.from_box(159.5, 89.5, 200, 100).validated(90, 160).box == (159.5, 89.5, 160.0, 90.0)
    assert Prompt.from_box(-1, -1, 0.5, 0.5).validated(90, 160).box == (0.0, 0.0, 0.5, 0.5)


def test_clipping_each_side_and_value_identity():
    p = Prompt(points=((3.0, 4.0),), labels=(1,), box=(-20.0, -5.0, 300.0, 200.0))
    v = p.validated(90, 160)
    assert v.box == (0.0, 0.0, 160.0, 90.0) and all(type(b) is float for b in v.box)
    assert v.points == p.points and v.labels == p.labels and p.box == (-20.0, -5.0, 300.0, 200.0)
    assert Prompt.from_box(10, 20, 30, 40).validated(90, 160).box == (10.0, 20.0, 30.0, 40.0)
    pts = Prompt.from_points([(1, 2)])
    assert pts.validated(90, 160) == pts and pts.validated(90, 160).box is None
