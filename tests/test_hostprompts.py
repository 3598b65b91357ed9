"""ovsam_core.hosts.hostprompts: rotated boxes, clicks and drawn masks -> prompts (pixels)."""
from __future__ import annotations

import numpy as np
import pytest

from ovsam_core import Prompt, click_prompt, clip_point, mask_prompt, rotated_box_bounds


def test_rotated_box_bounds():
    assert rotated_box_bounds(10, 20, 30, 40) == (10, 20, 40, 60)
    # 90 degrees clockwise (y down) about the top-left corner: the box swings to the left
    assert rotated_box_bounds(10, 20, 30, 40, 90) == pytest.approx((-30, 20, 10, 50))
    x0, y0, x1, y1 = rotated_box_bounds(0, 0, 10, 10, 45)
    assert (x1 - x0, y1 - y0) == pytest.approx((10 * 2 ** 0.5, 10 * 2 ** 0.5)) and y0 == pytest.approx(0)


def test_click_prompt_and_clip():
    assert clip_point(-5, 120, 100, 80) == (0.0, 80.0)
    assert click_prompt([]) is None and click_prompt([(5, 5, 0)]) is None  # nothing to segment yet
    p = click_prompt([(5, 6, 1), (7, 8, 0)], (1, 2, 30, 40))
    assert p == Prompt(((5.0, 6.0), (7.0, 8.0)), (1, 0), (1, 2, 30, 40))
    assert click_prompt([(5, 5, 0)], (0, 0, 9, 9)).box == (0, 0, 9, 9)  # a box with a negative click


def test_mask_prompt_is_the_tight_box():
    m = np.zeros((20, 30), bool)
    m[3:7, 10:25] = True
    assert mask_prompt(m).box == (10.0, 3.0, 25.0, 7.0)
    assert mask_prompt(np.zeros((4, 4), bool)) is None
