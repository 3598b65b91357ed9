"""Labelling runs over a collection as a host records them: settings, run records, summaries.

A host that labels a dataset (FiftyOne samples, a folder, a project) keeps, per output field,
a **run record**: how the field was labelled (its source field, model, settings), when the run
started, whether it finished and how long it took. A later run resumes only when its settings
are the same (:func:`same_run`); evaluation reads the record to find the ground truth. The
records live in a plain JSON-able mapping the host stores (``dataset.info`` in FiftyOne):
:func:`with_entry` / :func:`entry_of` read and update ``info[namespace][section][key]``.
:func:`recorded_run` wraps :func:`ovsam_core.run_batch` with that record, an object count and
a progress message; :func:`run_summary` is the dictionary a host returns to its user.
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import (Any, Callable, Dict, Hashable, Iterable, List, Mapping, Optional, Sequence, Tuple,
                    TypeVar)

from .jobs import BatchReport, run_batch
from .prelabel import AutoSettings

T = TypeVar("T")
#: the "mode" values that mean "choose for me": find with labels, everything without
DEFAULT_MODES = (None, "", "auto", "default")


def prelabel_settings(labels: Optional[Sequence[Any]], mode: Optional[str] = None, **values) -> AutoSettings:
    """Validated :class:`AutoSettings` of a prompt-free run: ``mode`` ``find`` | ``everything``
    (``None``/``"auto"``: find when there are ``labels``, else everything); ``values`` are
    :meth:`AutoSettings.parse` options (``None`` values are left out).

    Raises:
        ValueError: an unknown option or value (named), or mode ``off`` (it labels nothing).
    """
    mode = mode if mode not in DEFAULT_MODES else ("find" if labels else "everything")
    settings = AutoSettings.parse({"mode": mode, **{k: v for k, v in values.items() if v is not None}})
    if settings.mode == "off":
        raise ValueError("mode 'off' labels nothing: choose find or everything")
    return settings


def check_output_field(name: Any, source: Optional[str] = None, role: str = "prompt") -> str:
    """``name`` of a run's output field, or ``ValueError``: not a non-empty string, or the same
    as the run's ``source`` field (the ``role`` field it reads)."""
    if not name or not isinstance(name, str):
        raise ValueError(f"give an output field name, got {name!r}")
    if name == source:
        raise ValueError(f"the output field {name!r} is the {role} field; choose another name")
    return name


def same_run(old: Optional[Mapping[str, Any]], run: Mapping[str, Any]) -> bool:
    """Whether the recorded run ``old`` had the settings of ``run`` (every key of ``run``)."""
    old = old or {}
    return {k: old.get(k) for k in run} == dict(run)


def entry_of(info: Optional[Mapping[str, Any]], namespace: str, section: str) -> Any:
    """``info[namespace][section]``, None when absent."""
    return ((info or {}).get(namespace) or {}).get(section)


def with_entry(info: Optional[Mapping[str, Any]], namespace: str, section: str, key: Optional[str],
               value: Any) -> Dict[str, Any]:
    """A copy of ``info`` with ``info[namespace][section][key] = value`` (``key=None``: the section
    itself is ``value``; ``None`` with ``key=None`` removes the section). ``info`` is not changed."""
    out = dict(info or {})
    block = dict(out.get(namespace) or {})
    if key is None:
        if value is None:
            block.pop(section, None)
        else:
            block[section] = value
    else:
        block[section] = {**(block.get(section) or {}), key: value}
    out[namespace] = block
    return out


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second (a run record's ``started``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunOutcome:
    """What :func:`recorded_run` did: the batch report, objects written, wall seconds."""

    report: BatchReport
    objects: int
    seconds: float


def recorded_run(items: Iterable[T], process: Callable[[T], Optional[int]], run: Mapping[str, Any],
                 record: Callable[[Dict[str, Any]], None], *, key: Callable[[T], Hashable],
                 done: Callable[[Hashable], bool], name: Optional[Callable[[T], str]] = None,
                 errors: Tuple[type, ...] = (), progress: Optional[Callable[[float, str], None]] = None,
                 should_stop: Optional[Callable[[], bool]] = None, unit: str = "samples") -> RunOutcome:
    """:func:`run_batch` of ``process`` (it writes one item and returns its object count, or None
    when it wrote nothing), recorded: ``record(run + {"finished": False, "started"})`` before the
    first item and ``record(run + {"finished", "seconds"})`` after the last (finished: no item
    failed and the run was not stopped early).

    Args:
        progress: ``progress(fraction, "k/total samples, n objects")`` after each item.
        key / done / name / errors / should_stop: as for :func:`run_batch`.
    """
    t0, objects = time.time(), [0]
    record({**run, "finished": False, "started": now_iso()})

    def one(item: T):
        n = process(item)
        objects[0] += n or 0
        return n

    def report(k: int, total: int) -> None:
        if progress is not None:
            progress(k / max(total, 1), f"{k}/{total} {unit}, {objects[0]} objects")

    rep = run_batch(items, one, key=key, done=done, name=name, errors=errors, show_progress=False, progress=report,
                    should_stop=should_stop)
    seconds = round(time.time() - t0, 3)
    record({**run, "finished": not (rep.cancelled or rep.failed), "seconds": seconds})
    return RunOutcome(rep, objects[0], seconds)


def run_summary(outcome: RunOutcome, problems: Sequence[str] = (), limit: int = 20) -> Dict[str, Any]:
    """``samples`` (given), ``processed``, ``labelled`` (items that got labels), ``objects``,
    ``skipped_existing`` (done before), ``failed``, ``problems`` (failures first, then
    ``problems``; at most ``limit``), ``cancelled`` and ``seconds`` of a run."""
    rep = outcome.report
    lines: List[str] = [f"{k}: {m}" for k, m in rep.failed] + list(problems)
    return {"samples": rep.total, "processed": rep.processed,
            "labelled": sum(v is not None for v in rep.results.values()), "objects": outcome.objects,
            "skipped_existing": rep.skipped, "failed": len(rep.failed), "problems": lines[:limit],
            "cancelled": rep.cancelled, "seconds": outcome.seconds}
