"""Labelling runs (`ovsam_core.hosts.labelruns`): default settings, run records, resume checks, summaries."""
from __future__ import annotations

import pytest

from ovsam_core import (HostLabel, entry_of, prelabel_settings, recorded_run, run_summary, same_run, with_entry)


def test_prelabel_settings_choose_find_with_labels_and_refuse_off():
    assert prelabel_settings([HostLabel("dog", "dog")]).mode == "find"
    assert prelabel_settings(None, "auto").mode == "everything"
    s = prelabel_settings(None, "find", points_per_side=8, min_score=None)
    assert s.mode == "find" and s.points_per_side == 8 and s.min_score == prelabel_settings(None).min_score
    with pytest.raises(ValueError, match="labels nothing"):
        prelabel_settings([HostLabel("dog", "dog")], "off")
    with pytest.raises(ValueError, match="points_per_side"):
        prelabel_settings(None, points_per_side=0)


def test_same_run_compares_the_new_runs_settings():
    run = {"model": "m", "classes": ["dog"]}
    assert same_run({**run, "finished": True, "seconds": 3.0}, run)
    assert not same_run({"model": "m", "classes": ["cat"]}, run)
    assert not same_run(None, run) and not same_run({"model": "m"}, run)


def test_entries_are_updated_in_a_copy():
    info = {"other": 1, "ovsam": {"runs": {"a": {"x": 1}}}}
    out = with_entry(info, "ovsam", "runs", "b", {"x": 2})
    assert out == {"other": 1, "ovsam": {"runs": {"a": {"x": 1}, "b": {"x": 2}}}}
    assert info == {"other": 1, "ovsam": {"runs": {"a": {"x": 1}}}}
    assert entry_of(out, "ovsam", "runs")["b"] == {"x": 2} and entry_of(None, "ovsam", "runs") is None
    out = with_entry(out, "ovsam", "vocabulary", None, {"preset": "coco"})
    assert entry_of(out, "ovsam", "vocabulary") == {"preset": "coco"}
    assert entry_of(with_entry(out, "ovsam", "vocabulary", None, None), "ovsam", "vocabulary") is None


def test_recorded_run_records_counts_and_resumes():
    records, messages, written = [], [], []

    def process(item):
        if item == "bad":
            raise OSError("unreadable")
        written.append(item)
        return None if item == "empty" else len(item)

    out = recorded_run(["ab", "done", "bad", "empty", "abc"], process, {"model": "m"}, records.append,
                       key=lambda it: it, done={"done"}.__contains__, errors=(OSError,),
                       progress=lambda f, m: messages.append((f, m)))
    assert written == ["ab", "empty", "abc"] and out.objects == 5
    assert records[0]["finished"] is False and records[0]["model"] == "m" and "started" in records[0]
    assert records[-1]["finished"] is False and records[-1]["seconds"] == out.seconds  # one item failed
    assert messages[-1] == (1.0, "4/4 samples, 5 objects")
    s = run_summary(out, ["prompt p1: no points"], limit=2)
    assert s == {"samples": 5, "processed": 3, "labelled": 2, "objects": 5, "skipped_existing": 1, "failed": 1,
                 "problems": ["bad: unreadable", "prompt p1: no points"], "cancelled": False,
                 "seconds": out.seconds}


def test_a_stopped_run_is_not_finished():
    records, written = [], []

    def process(item):
        written.append(item)
        return 1

    out = recorded_run([1, 2, 3], process, {}, records.append, key=lambda it: it, done=lambda k: False,
                       should_stop=lambda: len(written) >= 1)
    assert written == [1] and out.report.cancelled and records[-1]["finished"] is False
    assert run_summary(out)["cancelled"] is True
    records.clear()
    recorded_run([1], process, {}, records.append, key=lambda it: it, done=lambda k: False)
    assert records[-1]["finished"] is True


def test_check_output_field_refuses_empty_names_and_the_source_field():
    from ovsam_core import check_output_field

    assert check_output_field("ovsam", "ground_truth") == "ovsam"
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match="give an output field name"):
            check_output_field(bad)
    with pytest.raises(ValueError, match="'gt' is the classes field"):
        check_output_field("gt", "gt", "classes")
