"""``OVSAM_REQUIRE_HOSTS=1`` turns a missing host into a failure; without it, a clean skip.

Each case runs pytest in a subprocess over a tiny test folder whose conftest hides Flask
(``sys.modules["flask"] = None`` makes ``import flask`` fail as if it were not installed) and
whose test module imports the real ``tests/label_studio/ls_fixtures.py``, exactly as the Label
Studio suite does.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from strict_skips import ALLOWED_SKIPS, ENV, allowed_name

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@pytest.fixture()
def tiny(tmp_path) -> Path:
    (tmp_path / "conftest.py").write_text('import sys\nsys.modules["flask"] = None  # flask "not installed"\n')
    (tmp_path / "test_host.py").write_text(textwrap.dedent("""
        from ls_fixtures import *  # noqa: F401,F403 - skips without the label-studio extra

        def test_uses_the_host():
            pass
    """))
    (tmp_path / "test_core.py").write_text(textwrap.dedent("""
        import pytest

        def test_core():
            assert 1 + 1 == 2

        def test_optional_extra():
            pytest.importorskip("onnxscript_not_installed_here", reason="could not import 'onnxscript'")

        @pytest.mark.xfail(strict=True, reason="known bug")
        def test_known_bug():
            assert False
    """))
    return tmp_path


def _pytest(folder: Path, strict: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS / "label_studio"), str(TESTS)]),
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")  # no napari/Qt/xvfb plugins: only this folder
    env.pop(ENV, None)
    if strict:
        env[ENV] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "strict_skips", "-p", "no:cacheprovider", "-ra",
         "--rootdir", str(folder), str(folder)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_strict_run_fails_on_a_missing_host_with_a_clear_message(tiny):
    r = _pytest(tiny, strict=True)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert f"{ENV}=1 but this was skipped: the label-studio extra is not installed" in out, out
    assert "bash .ci/setup-hosts.sh" in out
    # the other tests still ran; the allowed skip and the xfail stay what they are
    assert re.search(r"\b1 passed\b", out) and re.search(r"\b1 skipped\b", out), out
    assert re.search(r"\b1 xfailed\b", out) and re.search(r"\b1 error\b", out), out
    assert "skipped: 2 (allowed: onnxscript x1; unexpected: 1, failed)" in out, out


def test_without_the_switch_a_missing_host_is_a_clean_skip(tiny):
    r = _pytest(tiny, strict=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert re.search(r"\b1 passed, 2 skipped, 1 xfailed\b", out), out
    assert "the label-studio extra is not installed: pip install -e '.[label-studio]'" in out
    assert f"unexpected: 1, would fail under {ENV}=1" in out, out


def test_allowed_skips_are_named_and_matched_by_reason():
    assert set(ALLOWED_SKIPS) == {"onnxscript"}  # keep tests/README.md's list in step
    assert allowed_name("could not import 'onnxscript': No module named 'onnxscript'") == "onnxscript"
    assert allowed_name("could not import 'flask': No module named 'flask'") is None
    assert allowed_name("golden parity vectors not found at /x (set OVSAM_PARITY_DIR)") is None


def test_ci_runs_the_readme_test_command_strictly():
    run = (REPO / ".ci" / "run").read_text()
    assert re.search(rf"^export {ENV}=1$", run, re.M), "set the switch in .ci/run"
    assert run.index(f"export {ENV}=1") < run.rindex(".venv/bin/pytest")
