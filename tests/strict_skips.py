"""Strict test runs: with ``OVSAM_REQUIRE_HOSTS=1`` a skip is a failure unless it is allowed here.

The host suites (Label Studio, FiftyOne, napari), the Label Studio end-to-end test and the
parity tests skip when their host application, X server, server venv or golden vectors are
missing, so that a developer without them gets clean one-line skips. CI (``.ci/run``) sets
``OVSAM_REQUIRE_HOSTS=1``: there every skip whose reason matches no entry of
:data:`ALLOWED_SKIPS` is turned into a failure (a test error for module-level skips) that
repeats the skip's reason, so a broken host install cannot pass as "N skipped".

Every run ends with a one-paragraph summary: the number of skipped tests, the allowed ones by
name, and the unexpected ones (failures under the switch, listed with their reason otherwise).

Loaded by ``tests/conftest.py``; usable on any test folder with ``-p strict_skips`` (with
``tests/`` on ``PYTHONPATH``), which is how ``tests/test_strict_skips.py`` checks it.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from typing import Dict, Optional, Tuple

import pytest

ENV = "OVSAM_REQUIRE_HOSTS"

#: The only skips CI accepts: name -> (regular expression searched in the skip reason, why).
#: Add an entry here (and to tests/README.md) only for an optional dependency no extra installs.
ALLOWED_SKIPS: Dict[str, Tuple[str, str]] = {
    "onnxscript": (r"could not import 'onnxscript'",
                   "torch.onnx's dynamo exporter needs onnxscript, which no ovsam extra installs"),
}

_allowed: Counter = Counter()
_unexpected: Counter = Counter()


def strict() -> bool:
    """True when ``$OVSAM_REQUIRE_HOSTS`` is set to something other than ``""``/``0``."""
    return os.environ.get(ENV, "") not in ("", "0")


def allowed_name(reason: str) -> Optional[str]:
    """The :data:`ALLOWED_SKIPS` entry whose pattern occurs in ``reason``, or None."""
    for name, (pattern, _why) in ALLOWED_SKIPS.items():
        if re.search(pattern, reason):
            return name
    return None


def _reason(report) -> str:
    lr = report.longrepr
    text = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
    return text.removeprefix("Skipped: ").strip().splitlines()[0] if text.strip() else "(no reason)"


def _judge(report) -> None:
    """Count a skip; under the switch turn an unexpected one into a failure."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _reason(report)
    name = allowed_name(reason)
    if name is not None:
        _allowed[name] += 1
        return
    _unexpected[reason] += 1
    if strict():
        report.outcome = "failed"
        report.longrepr = (
            f"{ENV}=1 but this was skipped: {reason}\n"
            f"Fix the setup (bash .ci/setup-hosts.sh; parity vectors: set OVSAM_PARITY_DIR), "
            f"or, if the skip is expected, allow it by name in tests/strict_skips.py ALLOWED_SKIPS.")


def pytest_configure(config) -> None:
    if strict():
        # a host module's import-time skip becomes a collection error: run the other tests anyway
        config.option.continue_on_collection_errors = True


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    _judge(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _judge(report)
    return report


def pytest_report_header(config):
    if strict():
        return f"{ENV}=1: skips fail unless allowed by name ({', '.join(ALLOWED_SKIPS)})"
    return None


def pytest_terminal_summary(terminalreporter) -> None:
    tr = terminalreporter
    total = sum(_allowed.values()) + sum(_unexpected.values())
    allowed = ", ".join(f"{n} x{c}" for n, c in sorted(_allowed.items())) or "none"
    tr.section("ovsam skip summary", sep="-")
    verdict = "failed" if strict() else f"would fail under {ENV}=1"
    tr.write_line(f"skipped: {total} (allowed: {allowed}; unexpected: {sum(_unexpected.values())}"
                  + (f", {verdict})" if _unexpected else ")"))
    for reason, count in _unexpected.most_common():
        tr.write_line(f"  unexpected x{count}: {reason}")
