"""ovsam_core.hosts.learner.labelled_images: a host annotation's regions -> (image, LabelledRegion list) per image."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from ovsam_core import HostLabel, Prompt, labelled_images


def test_groups_by_image_maps_labels_and_skips_unreadable(caplog):
    labels = [HostLabel("Dog", "dog", ("puppy",)), HostLabel("cat", "cat")]
    mask = np.ones((4, 4), bool)
    regions = [("a", "puppy", "r1", {"box": (0, 0, 2, 2)}), ("b", "cat", "r2", {"box": (1, 1, 3, 3)}),
               ("a", "horse", "r3", {"box": (0, 0, 1, 1)}),  # no project label: left out
               ("a", None, "r4", {"box": (0, 0, 1, 1)}),  # no label at all
               ("a", "cat", "r5", {"bad": True}),  # unreadable region: skipped, logged
               ("a", "cat", "r6", {"empty": True}),  # no prompt (empty mask): left out
               ("c", "cat", "r7", {"box": (0, 0, 1, 1)})]  # unreadable image: skipped, logged
    loaded = []

    def image_of(key):
        if key == "c":
            raise ValueError("gone")
        loaded.append(key)
        return SimpleNamespace(key=key, width=4, height=4)

    def geometry_of(region, image):
        if region.get("bad"):
            raise ValueError("bad numbers")
        if region.get("empty"):
            return None, None
        return Prompt.from_box(*region["box"]), mask

    caplog.set_level(logging.INFO)
    out = labelled_images(regions, labels, image_of, geometry_of, (ValueError,), logging.getLogger("t"), "annotation 7")
    assert loaded == []  # lazy
    got = [(img.key, [(r.label, r.region_id, r.prompt.box) for r in regs]) for img, regs in out]
    assert got == [("a", [("Dog", "r1", (0, 0, 2, 2))]), ("b", [("cat", "r2", (1, 1, 3, 3))])]
    assert "annotation 7: region r5 skipped: bad numbers" in caplog.text
    assert "annotation 7: image not readable: gone" in caplog.text


def test_other_errors_propagate():
    def image_of(key):
        raise KeyError(key)

    with pytest.raises(KeyError):
        list(labelled_images([("a", "cat", "r", {})], [HostLabel("cat", "cat")], image_of, lambda r, i: (None, None)))
