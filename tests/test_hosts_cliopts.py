"""ovsam_core.hosts.cliopts: the command-line options the core and the host adapters share."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ovsam_core import AUTO_MODES, add_model_options, add_prelabel_options, prelabel_overrides
from ovsam_core.runtime.auto import CHOICES


def _parser(**kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_model_options(p, **kw)
    return p


def test_model_options_defaults_and_runtime_dtypes():
    a = _parser().parse_args([])
    assert (a.model, a.device, a.dtype, a.weights, a.no_download, a.quiet) == ("ovsam-lvis", "auto", "auto", None,
                                                                               False, False)
    for dtype in CHOICES:
        assert _parser().parse_args(["--dtype", dtype]).dtype == dtype
    with pytest.raises(SystemExit):
        _parser().parse_args(["--dtype", "fp64"])
    assert _parser().parse_args(["--weights-dir", "w"]).weights_dir == Path("w")


def test_unset_model_options_leave_everything_to_the_caller():
    a = _parser(default_model="ovsam-shapes", unset=True, quiet=False).parse_args([])
    assert (a.model, a.device, a.dtype, a.no_download) == (None, None, None, False)
    assert not hasattr(a, "quiet")
    assert "default ovsam-shapes" in _parser(default_model="ovsam-shapes", unset=True).format_help()


def test_prelabel_options_are_none_unless_given():
    p = argparse.ArgumentParser()
    add_prelabel_options(p)
    assert prelabel_overrides(p.parse_args([])) == {"auto": None, "points_per_side": None, "min_score": None}
    a = p.parse_args(["--auto", "everything", "--points-per-side", "16", "--min-score", "0.3"])
    assert prelabel_overrides(a) == {"auto": "everything", "points_per_side": 16, "min_score": 0.3}
    for mode in AUTO_MODES:
        assert p.parse_args(["--auto", mode]).auto == mode
    with pytest.raises(SystemExit):
        p.parse_args(["--auto", "all"])


def test_check_options_enforces_choices_and_minimum_from_the_field_metadata():
    from dataclasses import dataclass, field

    from ovsam_core import LABEL_SOURCES, check_options, option

    @dataclass(frozen=True)
    class S:
        source: str = field(default="model", metadata=option("where", choices=LABEL_SOURCES))
        top_k: int = field(default=5, metadata=option("how many", minimum=1))
        free: int = 0  # no option: never checked

    check_options(S(free=-3))
    with pytest.raises(ValueError, match="source must be 'model' or 'smart', got 'x'"):
        check_options(S(source="x"))
    with pytest.raises(ValueError, match="top_k must be >= 1, got 0"):
        check_options(S(top_k=0))
    # minimum is ours, not an argparse keyword: the option still builds
    from ovsam_core import add_dataclass_options

    p = argparse.ArgumentParser()
    add_dataclass_options(p, S, "source", "top_k")
    assert p.parse_args(["--top-k", "3", "--source", "smart"]).top_k == 3
    with pytest.raises(SystemExit):
        p.parse_args(["--source", "x"])
