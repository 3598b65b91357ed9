"""Property tests of ``Predictor.predict`` that prove both sides.

Valid inputs (finite prompts that touch the image, supported dtypes and shapes) are generated
separately from invalid ones: every valid input must succeed and satisfy the invariants (one
object per prompt in order, mask shape, score range, boxes inside the image, top-k order);
every invalid prompt must raise :class:`PromptError` whose message names the bad value.
Nothing else may be raised. The meta-tests at the end show that a predictor rejecting every
input, or accepting invalid ones, fails these properties.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ovsam_core.prompts import Prompt, PromptError
from test_predictor import image, predictor  # noqa: F401 - fixtures: tiny model, a (90, 160) image

H, W = 90, 160
VOCAB = ["a", "b", "c"]
SETTINGS = settings(max_examples=15, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ----------------------------------------------------------------------------- valid prompts
_x = st.floats(0, W, allow_nan=False)
_y = st.floats(0, H, allow_nan=False)


@st.composite
def valid_box(draw):
    """A non-empty box that overlaps the image (it may stick out: it is clipped)."""
    x0 = draw(st.floats(-40, W - 1, allow_nan=False))
    y0 = draw(st.floats(-40, H - 1, allow_nan=False))
    x1 = draw(st.floats(max(x0, 0) + 0.5, W + 40, allow_nan=False))
    y1 = draw(st.floats(max(y0, 0) + 0.5, H + 40, allow_nan=False))
    return (x0, y0, x1, y1)


@st.composite
def valid_prompt(draw):
    kind = draw(st.sampled_from(["box", "points", "box+points"]))
    box = draw(valid_box()) if "box" in kind else None
    if "points" not in kind:
        return Prompt(box=box)
    pts = draw(st.lists(st.tuples(_x, _y), min_size=1, max_size=4))
    labels = draw(st.lists(st.sampled_from([0, 1]), min_size=len(pts), max_size=len(pts)))
    if box is None and 1 not in labels:
        labels[0] = 1
    return Prompt(points=tuple(pts), labels=tuple(labels), box=box)


def check_prediction(pred, prompts, h: int, w: int) -> None:
    """The invariants of a successful ``predict``."""
    assert len(pred) == len(prompts) and pred.image_size == (h, w)
    for o, p in zip(pred, prompts):
        assert o.prompt.points == p.points and o.prompt.labels == p.labels  # prompt order kept
        if p.box is not None:
            bx0, by0, bx1, by1 = o.prompt.box
            assert 0 <= bx0 < bx1 <= w and 0 <= by0 < by1 <= h
            assert (bx0, by0) == (max(0.0, p.box[0]), max(0.0, p.box[1]))
        assert o.mask.shape == (h, w) and o.mask.dtype == bool
        assert 0.0 <= o.score <= 1.0 and math.isfinite(o.score)
        assert o.label in VOCAB and o.label_index == VOCAB.index(o.label)
        assert o.top_k[0] == (o.label, o.score)
        scores = [s for _, s in o.top_k]
        assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
        x0, y0, x1, y1 = o.bbox_xyxy
        assert o.area == int(o.mask.sum())
        if o.area:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            ys, xs = np.nonzero(o.mask)
            assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        else:
            assert (x0, y0, x1, y1) == (0, 0, 0, 0)


@SETTINGS
@given(prompts=st.lists(valid_prompt(), min_size=1, max_size=4))
def test_valid_prompts_succeed_with_invariants(predictor, image, prompts):
    check_prediction(predictor.predict(image, prompts, VOCAB, top_k=2), prompts, H, W)


# --------------------------------------------------------------------------- invalid prompts
_nonfinite = st.sampled_from([float("nan"), float("inf"), float("-inf")])


def _g(v: float) -> str:
    return f"{v:g}"


@st.composite
def invalid_prompt(draw):
    """(prompt, text the error message must contain): one defect per prompt."""
    defect = draw(st.sampled_from(["empty", "point_nonfinite", "point_outside", "label",
                                   "only_negative", "box_nonfinite", "box_empty", "box_outside"]))
    if defect == "empty":
        return Prompt(), "empty prompt"
    if defect == "point_nonfinite":
        bad = draw(_nonfinite)
        x, y = draw(st.sampled_from([(bad, 10.0), (10.0, bad)]))
        return Prompt.from_points([(x, y)]), str(bad)
    if defect == "point_outside":
        x = draw(st.one_of(st.floats(-1e6, -0.01), st.floats(W + 0.01, 1e6)))
        y = draw(_y)
        if draw(st.booleans()):
            x, y = draw(_x), draw(st.one_of(st.floats(-1e6, -0.01), st.floats(H + 0.01, 1e6)))
        return Prompt.from_points([(x, y)]), f"({_g(x)}, {_g(y)})"
    if defect == "label":
        lab = draw(st.integers(-5, 5).filter(lambda v: v not in (0, 1)))
        return Prompt(points=((5.0, 5.0),), labels=(lab,)), str(lab)
    if defect == "only_negative":
        pts = draw(st.lists(st.tuples(_x, _y, st.just(0)), min_size=1, max_size=3))
        return Prompt.from_points(pts), "only negative points"
    if defect == "box_nonfinite":
        box = list(draw(valid_box()))
        box[draw(st.integers(0, 3))] = draw(_nonfinite)
        return Prompt(box=tuple(box)), str(box[[i for i, v in enumerate(box) if not math.isfinite(v)][0]])
    if defect == "box_empty":
        x0, y0 = draw(_x), draw(_y)
        x1 = draw(st.floats(-100, x0)) if draw(st.booleans()) else x0 + 1
        y1 = draw(st.floats(-100, y0)) if x1 > x0 else y0 + 1
        return Prompt.from_box(x0, y0, x1, y1), f"{_g(x0)},{_g(y0)},{_g(x1)},{_g(y1)}"
    # box_outside: non-empty, but entirely left of / above / right of / below the image
    side = draw(st.sampled_from(["left", "top", "right", "bottom"]))
    a = draw(st.floats(1, 1e4))
    b = a + draw(st.floats(1, 100))
    x0, y0, x1, y1 = {"left": (-b, 10, -a + 0.0, 20), "top": (10, -b, 20, -a + 0.0),
                      "right": (W + a - 1, 10, W + b, 20), "bottom": (10, H + a - 1, 20, H + b)}[side]
    return Prompt.from_box(x0, y0, x1, y1), f"{_g(x0)},{_g(y0)},{_g(x1)},{_g(y1)}"


@SETTINGS
@given(bad=invalid_prompt(), good=st.lists(valid_prompt(), max_size=2), at=st.integers(0, 2))
def test_invalid_prompts_raise_prompt_error_naming_the_value(predictor, image, bad, good, at):
    prompt, named = bad
    prompts = list(good)
    prompts.insert(min(at, len(prompts)), prompt)
    with pytest.raises(PromptError) as e:
        predictor.predict(image, prompts, VOCAB)
    assert named in str(e.value), (named, str(e.value))
    assert len(str(e.value).splitlines()) == 1


# ---------------------------------------------------------------------- images through predict
_DTYPES = ["uint8", "uint16", "int32", "float32", "float64", "bool"]


@SETTINGS
@given(h=st.integers(1, 120), w=st.integers(1, 120), dtype=st.sampled_from(_DTYPES),
       channels=st.sampled_from([None, 1, 3, 4]), data=st.data())
def test_valid_images_succeed_with_invariants(predictor, h, w, dtype, channels, data):
    rng = np.random.default_rng(h * 1000 + w)
    shape = (h, w) if channels is None else (h, w, channels)
    arr = (rng.random(shape) * 300).astype(dtype)
    prompts = [Prompt.from_box(0, 0, w, h), Prompt.from_points([(data.draw(st.floats(0, w)), data.draw(st.floats(0, h)))])]
    check_prediction(predictor.predict(arr, prompts, VOCAB, top_k=2), prompts, h, w)


# ------------------------------------------------------------------------------- meta-tests
def _run(test, **kw) -> BaseException | None:
    """Run a hypothesis test function directly; the exception it fails with, or None."""
    try:
        test(**kw)
    except BaseException as e:  # noqa: BLE001 - pytest.fail's exception is a BaseException
        return e
    return None


def test_meta_a_predictor_that_rejects_everything_fails_the_properties(predictor, image, monkeypatch):
    def reject(*a, **k):
        raise PromptError("prompt rejected")

    monkeypatch.setattr(predictor, "predict", reject)
    assert isinstance(_run(test_valid_prompts_succeed_with_invariants, predictor=predictor, image=image),
                      PromptError)
    assert isinstance(_run(test_valid_images_succeed_with_invariants, predictor=predictor), PromptError)
    # a blanket rejection does not name the bad value either
    e = _run(test_invalid_prompts_raise_prompt_error_naming_the_value, predictor=predictor, image=image)
    assert isinstance(e, AssertionError) and "prompt rejected" in str(e)


def test_meta_a_predictor_that_accepts_invalid_prompts_fails(predictor, image, monkeypatch):
    monkeypatch.setattr(predictor, "predict", lambda *a, **k: None)  # no validation, no error
    e = _run(test_invalid_prompts_raise_prompt_error_naming_the_value, predictor=predictor, image=image)
    assert isinstance(e, pytest.fail.Exception) and "DID NOT RAISE" in str(e)
