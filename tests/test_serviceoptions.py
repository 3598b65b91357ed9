"""ovsam_core.hosts.serviceoptions: shared model / pre-labelling settings a host's settings inherit."""
from __future__ import annotations

from dataclasses import dataclass, fields

import pytest

from ovsam_core import PredictorOptions, PrelabelDefaults, dataclass_from_env, env_table


@dataclass(frozen=True)
class HostSettings(PredictorOptions, PrelabelDefaults):
    port: int = 1


def test_a_host_inherits_the_fields_and_reads_them_from_the_env():
    names = [f.name for f in fields(HostSettings)]
    assert {"model", "vocab", "device", "weights", "auto", "min_score", "port"} <= set(names)
    s = dataclass_from_env(HostSettings, env_table(HostSettings, "H_"),
                           {"H_MODEL": "ovsam-test", "H_DOWNLOAD": "no", "H_POINTS_PER_SIDE": "8", "H_PORT": "5"})
    assert (s.model, s.download, s.points_per_side, s.port) == ("ovsam-test", False, 8, 5)


def test_auto_settings_defaults_and_overrides():
    a = PrelabelDefaults().auto_settings()
    assert (a.mode, a.points_per_side, a.min_score) == ("find", 32, 0.5)
    b = PrelabelDefaults(auto="off").auto_settings({"auto": "everything", "points_per_side": "16"})
    assert (b.mode, b.points_per_side) == ("everything", 16)
    with pytest.raises(ValueError, match="auto"):
        PrelabelDefaults().auto_settings({"auto": "sometimes"})


def test_load_predictor_uses_the_options():
    p = PredictorOptions(model="ovsam-test", device="cpu", cache_bytes=1234).load_predictor()
    assert str(p.device) == "cpu" and p.cache.max_bytes == 1234
    assert p.model_key[0] == "ovsam-test" and p.model_key[-1] == "fp32"


def test_check_refuses_unknown_models_and_mistyped_vocabulary_paths(tmp_path):
    PredictorOptions(model="ovsam-test", vocab="coco").check()
    (tmp_path / "v.txt").write_text("cat\ndog\n")
    PredictorOptions(model="ovsam-test", vocab=str(tmp_path / "v.txt")).check()
    with pytest.raises(KeyError, match="no-such-model"):
        PredictorOptions(model="no-such-model").check()
    with pytest.raises(ValueError, match="nonexistent"):
        PredictorOptions(model="ovsam-test", vocab="/nonexistent/my_vocab.txt").check()
