"""Batch and resume bookkeeping for labelling many items (images, tasks, samples).

Every host labels a collection the same way: skip what an earlier (maybe interrupted) run
already finished, work through the rest one item at a time, write each result as soon as it
exists (so a kill loses at most the item in flight), report progress, tolerate unreadable items
and say at the end what happened. :func:`run_batch` is that loop; :class:`Journal` is an
append-only, fsynced JSON-lines record of finished items for hosts that have no place of their
own to remember them (the CLI; a host that can ask itself what is done, like Label Studio's
predictions or a FiftyOne field, passes that as ``done``).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Hashable, Iterable, List, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")


class Journal:
    """Append-only JSON-lines record of finished items, keyed by ``record[key]``.

    Each :meth:`append` is flushed and fsynced before it returns; a torn last line (a crash
    mid-write) is cut on open, so that item counts as not done and is done again.
    """

    def __init__(self, path, key: str = "id") -> None:
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()

    def _repair(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def records(self) -> Dict[Any, Dict[str, Any]]:
        """Finished items: key -> its last record (unparseable lines are ignored)."""
        done: Dict[Any, Dict[str, Any]] = {}
        if not self.path.is_file():
            return done
        for line in self.path.read_text("utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and self.key in rec:
                done[rec[self.key]] = rec
        return done

    def append(self, record: Dict[str, Any]) -> None:
        """Write one record durably (it must hold the key field)."""
        if self.key not in record:
            raise ValueError(f"a journal record needs its {self.key!r} field")
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


@dataclass
class BatchReport:
    """What :func:`run_batch` did.

    Attributes:
        total: items given; ``skipped``: already done before this run; ``processed``: done now;
        ``failed``: (key, message) of items that raised one of the tolerated errors;
        ``cancelled``: the run stopped early (``should_stop``); ``results``: key -> the value
        ``process`` returned, for the items done now.
    """

    total: int = 0
    skipped: int = 0
    processed: int = 0
    failed: List[Tuple[Hashable, str]] = field(default_factory=list)
    cancelled: bool = False
    results: Dict[Hashable, Any] = field(default_factory=dict)

    def summary(self, noun: str = "item") -> str:
        """One line for a log / status bar."""
        parts = [f"{self.processed} {noun}(s) labelled"]
        if self.skipped:
            parts.append(f"{self.skipped} already done before")
        if self.failed:
            parts.append(f"{len(self.failed)} failed (first: {self.failed[0][0]}: {self.failed[0][1]})")
        if self.cancelled:
            parts.append(f"stopped early: {self.total - self.skipped - self.processed - len(self.failed)} left")
        return "; ".join(parts)


def run_batch(items: Iterable[T], process: Callable[[T], Any], *, key: Callable[[T], Hashable] = lambda x: x,
              done: Optional[Callable[[Hashable], bool]] = None,
              name: Optional[Callable[[T], str]] = None, errors: Tuple[type, ...] = (), desc: str = "label", unit: str = "item", show_progress: bool = True,
              progress: Optional[Callable[[int, int], None]] = None,
              should_stop: Optional[Callable[[], bool]] = None) -> BatchReport:
    """Run ``process(item)`` on every item not already ``done``, one at a time, in order.

    Args:
        items: the work (any order the caller wants; it is kept).
        process: does one item completely, including writing its result to the host, so that a
            kill after it returns never loses or repeats that item; its return value is kept in
            :attr:`BatchReport.results`.
        key: an item's stable identity (task id, sample id, file name).
        done: ``done(key)`` -> already finished by an earlier run (skipped, counted).
        name: how an item is named in warnings (default: its key).
        errors: exception types that mark just that item failed (unreadable image ...); the
            run goes on. Anything else propagates after the progress bar is closed.
        desc / unit / show_progress: the tqdm progress bar (on stderr).
        progress: ``progress(finished, todo)`` after each item (host progress bars).
        should_stop: checked before each item; ``True`` ends the run early (cancelled).
    """
    from tqdm import tqdm

    seq: Sequence[T] = list(items)
    report = BatchReport(total=len(seq))
    todo = []
    for it in seq:
        if done is not None and done(key(it)):
            report.skipped += 1
        else:
            todo.append(it)
    with tqdm(total=len(todo), desc=desc, unit=unit, disable=not show_progress) as bar:
        for n, it in enumerate(todo):
            if should_stop is not None and should_stop():
                report.cancelled = True
                break
            k = key(it)
            try:
                report.results[k] = process(it)
                report.processed += 1
            except errors as e:  # type: ignore[misc]
                report.failed.append((k, str(e)))
                bar.write(f"ovsam: warning: skipped {name(it) if name else k}: {e}", file=sys.stderr)
            bar.update(1)
            if progress is not None:
                progress(n + 1, len(todo))
    return report
