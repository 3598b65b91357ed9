"""Precision/recall/F-score and label accuracy (`ovsam_core.hosts.rates`)."""
from __future__ import annotations

import pytest

from ovsam_core import detection_rates, label_accuracy, same_label


def test_detection_rates():
    r = detection_rates(3, 1, 2)
    assert (r["precision"], r["recall"]) == (0.75, 0.6)
    assert r["fscore"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert detection_rates(0, 0, 0) == {"tp": 0, "fp": 0, "fn": 0, "precision": 0.0, "recall": 0.0, "fscore": 0.0}


def test_label_accuracy_per_class_and_normalised_names():
    assert same_label("Traffic_Light", "traffic  light") and not same_label("cat", "dog") and not same_label(None, "x")
    acc, mean, per, n = label_accuracy([("cat", "cat"), ("dog", "cat"), ("Red_Circle", "red circle"), ("x", None)])
    assert n == 3 and acc == pytest.approx(2 / 3)
    assert per == {"cat": {"accuracy": 0.5, "count": 2}, "red circle": {"accuracy": 1.0, "count": 1}}
    assert mean == 0.75
    assert label_accuracy([]) == (0.0, 0.0, {}, 0)


def test_match_rates_from_one_to_one_matches():
    from ovsam_core import match_rates

    r = match_rates([0.9, None, 0.6, None], truths=5)   # 2 matched predictions, 2 unmatched, 3 truths missed
    assert (r["tp"], r["fp"], r["fn"]) == (2, 2, 3)
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(0.4)
    assert match_rates([], 0) == detection_rates(0, 0, 0)
