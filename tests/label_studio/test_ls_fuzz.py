"""Label Studio requests, both sides: generated valid smart-tool requests must succeed with
valid regions; generated invalid ones must be a 4xx JSON error naming the bad value; random
JSON bodies never reach a 500. The meta-test shows that a backend refusing every request fails
the valid side."""
from __future__ import annotations

from ls_fixtures import *  # noqa: F401,F403 - fixtures (and the skip without the label-studio extra)

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ls_helpers import LABELS, config_xml, keypoint, ls_task, predict_body, rectangle

W, H = 480, 360  # examples/shapes.png
CFG = config_xml(outputs=("rectangle",))
SETTINGS = settings(max_examples=20, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _post(client, items):
    return client.post("/predict", json=predict_body([ls_task()], CFG, {"result": items}))


# ---------------------------------------------------------------------------------- valid
@st.composite
def valid_regions(draw):
    """Smart-tool regions: keypoints inside the image (at least one positive) and/or a box."""
    items = []
    n = draw(st.integers(0, 3))
    for i in range(n):
        items.append(keypoint(draw(st.floats(0, W)), draw(st.floats(0, H)), W, H,
                              label=draw(st.sampled_from(LABELS)), positive=(i == 0) or draw(st.booleans()),
                              rid=f"kp{i}"))
    if n == 0 or draw(st.booleans()):
        x0, y0 = draw(st.floats(0, W - 2)), draw(st.floats(0, H - 2))
        x1, y1 = draw(st.floats(x0 + 1, W)), draw(st.floats(y0 + 1, H))
        items.append(rectangle((x0, y0, x1, y1), W, H, label=draw(st.sampled_from(LABELS))))
    return items


def check_valid_response(r) -> None:
    assert r.status_code == 200, r.get_json()
    res = r.get_json()["results"]
    assert len(res) == 1 and res[0]["result"], res
    for reg in res[0]["result"]:
        assert reg["type"] == "rectanglelabels" and reg["from_name"] == "box" and reg["to_name"] == "image"
        assert (reg["original_width"], reg["original_height"]) == (W, H)
        assert len(reg["value"]["rectanglelabels"]) == 1 and reg["value"]["rectanglelabels"][0] in LABELS
        assert 0.0 <= reg["score"] <= 1.0
        v = reg["value"]
        assert 0 <= v["x"] and 0 <= v["y"] and v["width"] > 0 and v["height"] > 0
        assert v["x"] + v["width"] <= 100 + 1e-6 and v["y"] + v["height"] <= 100 + 1e-6


@SETTINGS
@given(items=valid_regions())
def test_valid_smart_requests_succeed_with_valid_regions(client, items):
    check_valid_response(_post(client, items))


# -------------------------------------------------------------------------------- invalid
_not_a_number = st.one_of(st.text(max_size=5).filter(lambda s: not _is_float(s)), st.none(), st.just([1]),
                          st.just({"a": 1}))


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


@st.composite
def invalid_regions(draw):
    """(regions, status, text the error must contain): one defect each."""
    defect = draw(st.sampled_from(["kp_nan", "kp_not_number", "rect_not_number", "rect_empty", "rect_outside"]))
    kp = keypoint(100, 100, W, H)
    if defect == "kp_nan":
        bad = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        kp["value"][draw(st.sampled_from(["x", "y"]))] = bad
        return [kp], 422, f"not finite: {bad!r}"
    if defect == "kp_not_number":
        bad = draw(_not_a_number)
        axis = draw(st.sampled_from(["x", "y"]))
        kp["value"][axis] = bad
        return [kp], 422, f"keypoint {axis} is not a number: {bad!r}"
    rect = rectangle((10, 10, 100, 100), W, H)
    if defect == "rect_not_number":
        bad = draw(_not_a_number)
        key = draw(st.sampled_from(["x", "y", "width", "height"]))
        rect["value"][key] = bad
        return [rect], 422, f"rectangle {key} is not a number: {bad!r}"
    if defect == "rect_empty":
        rect["value"][draw(st.sampled_from(["width", "height"]))] = -draw(st.floats(0, 50))
        return [rect], 422, "is empty: need x0 < x1 and y0 < y1"
    rect["value"]["x"] = draw(st.floats(100, 1e6))
    return [rect], 422, f"is outside the {W}x{H} image"


@SETTINGS
@given(case=invalid_regions())
def test_invalid_smart_requests_are_4xx_naming_the_value(client, case):
    items, status, named = case
    r = _post(client, items)
    assert r.status_code == status and r.is_json, (r.status_code, r.get_data(as_text=True))
    assert named in r.get_json()["error"], (named, r.get_json())
    assert "Traceback" not in r.get_data(as_text=True)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                     max_leaves=12)


@SETTINGS
@given(body=st.one_of(_json, st.fixed_dictionaries({"tasks": _json, "label_config": st.just(CFG), "params": _json}),
                      st.fixed_dictionaries({"tasks": st.just([ls_task()]), "label_config": st.just(CFG),
                                             "params": st.fixed_dictionaries({"context": st.fixed_dictionaries(
                                                 {"result": st.lists(_json, max_size=3)})})})))
def test_random_bodies_never_crash(client, body):
    r = client.post("/predict", data=json.dumps(body), content_type="application/json")
    assert r.is_json and r.status_code in (200, 400, 404, 422), (r.status_code, r.get_data(as_text=True))
    if r.status_code != 200:
        assert r.get_json()["error"] and "Traceback" not in r.get_data(as_text=True)


def test_meta_a_backend_refusing_everything_fails_the_valid_side(client_for, monkeypatch):
    from ovsam_plugins.label_studio.backend import BackendError

    client, backend = client_for()

    def refuse(payload):
        raise BackendError("refused", 422)

    monkeypatch.setattr(backend, "predict", refuse)
    with pytest.raises(AssertionError):
        test_valid_smart_requests_succeed_with_valid_regions(client=client)
