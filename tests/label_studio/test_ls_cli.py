"""``ovsam label-studio serve`` and the settings it passes to the workers."""
from __future__ import annotations

from ls_fixtures import *  # noqa: F401,F403 - fixtures (and the skip without the label-studio extra)

import argparse
import os
import subprocess
import sys

import pytest

from ovsam_plugins.label_studio.settings import Settings, settings_from_env, settings_to_env


def test_cli_module_imports_no_web_stack():
    code = ("import sys; import ovsam_plugins.label_studio.cli, ovsam_plugins.label_studio; "
            "bad = [m for m in ('flask', 'werkzeug', 'label_studio_sdk', 'gunicorn', 'torch') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_register_adds_serve():
    from ovsam_plugins.label_studio.cli import register, serve

    p = argparse.ArgumentParser(prog="ovsam")
    register(p.add_subparsers(dest="command"))
    a = p.parse_args(["label-studio", "serve", "--port", "9999", "--model", "ovsam-test", "--vocab", "lvis",
                      "--device", "cpu", "--allowed-hosts", "a.example, B.example:8080", "--no-learn"])
    assert a.func is serve and a.port == 9999 and a.host == "127.0.0.1"
    from ovsam_plugins.label_studio.cli import _settings

    s = _settings(a)
    assert (s.model, s.vocab, s.device, s.learn, s.warmup) == ("ovsam-test", "lvis", "cpu", False, True)
    assert s.allowed_hosts == ("a.example", "b.example:8080")


def test_ovsam_main_lists_the_command(capsys):
    from ovsam_core.cli import main

    with pytest.raises(SystemExit) as e:
        main(["label-studio", "serve", "--help"])
    assert e.value.code == 0
    assert "--vocab" in capsys.readouterr().out


def test_serve_check_loads_the_model(monkeypatch, tmp_path, capsys):
    from ovsam_core.cli import main

    monkeypatch.setattr(os, "environ", dict(os.environ))  # serve exports its settings for the workers
    assert main(["label-studio", "serve", "--check", "--model", "ovsam-test", "--device", "cpu",
                 "--model-dir", str(tmp_path)]) == 0
    assert "ok: ovsam-ovsam-test-labels" in capsys.readouterr().out
    assert os.environ["OVSAM_LS_MODEL"] == "ovsam-test" and os.environ["OVSAM_LS_DATA_DIR"] == str(tmp_path)
    assert main(["label-studio", "serve", "--check", "--model", "no-such-model", "--model-dir", str(tmp_path)]) == 2


def test_settings_env_round_trip_and_precedence():
    env = {"LABEL_STUDIO_HOST": "http://old:8080", "LABEL_STUDIO_URL": "http://ls:8080",
           "LABEL_STUDIO_ACCESS_TOKEN": "a", "LABEL_STUDIO_API_KEY": "b", "MODEL_DIR": "/m",
           "OVSAM_LS_ALLOWED_HOSTS": "x.example;y.example", "OVSAM_LS_LEARN": "false", "OVSAM_LS_TOP_K": "3",
           "BASIC_AUTH_USER": "u", "BASIC_AUTH_PASS": "p", "OVSAM_LS_VOCAB": "coco"}
    s = settings_from_env(env)
    assert (s.label_studio_url, s.api_key, s.model_dir, s.learn, s.top_k) == ("http://ls:8080", "b", "/m", False, 3)
    assert s.allowed_hosts == ("x.example", "y.example") and s.vocab == "coco"
    assert settings_from_env(settings_to_env(s)) == s
    assert settings_from_env({}, model="ovsam-test", vocab=None).vocab is None
    assert Settings().db_path.name == "ovsam-label-studio.sqlite3"


@pytest.mark.parametrize("env", [{"OVSAM_LS_TOP_K": "many"}, {"LABEL_STUDIO_URL": "ls:8080"},
                                 {"BASIC_AUTH_USER": "only-user"}, {"OVSAM_LS_LABEL_SOURCE": "both"}])
def test_bad_settings(env):
    with pytest.raises(ValueError):
        settings_from_env(env)


@pytest.mark.parametrize("command", ["serve", "prelabel"])
@pytest.mark.parametrize("dtype", ["auto", "ov-fp32", "ov-bf16", "bf16"])
def test_dtype_takes_the_runtimes_choices(command, dtype):
    """Regression: the Label Studio commands refused `auto`, `ov-fp32` and `ov-bf16`, which the core accepts."""
    from ovsam_plugins.label_studio.cli import _settings, register

    p = argparse.ArgumentParser(prog="ovsam")
    register(p.add_subparsers(dest="command"))
    a = p.parse_args(["label-studio", command, "--dtype", dtype, *(["--project", "1"] if command == "prelabel" else [])])
    assert a.dtype == dtype and _settings(a).dtype == dtype


def test_prelabel_options_left_out_are_none_and_settings_keep_their_defaults():
    from ovsam_core import prelabel_overrides
    from ovsam_plugins.label_studio.cli import _settings, register

    p = argparse.ArgumentParser(prog="ovsam")
    register(p.add_subparsers(dest="command"))
    a = p.parse_args(["label-studio", "prelabel", "--project", "3", "--points-per-side", "8", "--no-download"])
    assert prelabel_overrides(a) == {"auto": None, "points_per_side": 8, "min_score": None}
    s = _settings(a, learn=False)
    assert (s.model, s.dtype, s.download, s.learn, s.points_per_side) == ("ovsam-lvis", "fp32", False, False, 8)
