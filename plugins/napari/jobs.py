"""One background thread for the widget's model work; results are delivered on the Qt thread.

The poll timer is a child of the widget's Qt object, so Qt deletes it with the widget; stopping
it tolerates a timer that is already gone (at interpreter exit Python may delete it first, and
an exception in a Qt slot aborts the process under PyQt6).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, List, Optional

from qtpy.QtCore import QTimer


class Steps:
    """Progress of a cancellable job: the worker calls it with ``(done, total)`` (the core's
    ``progress`` callback); it raises :class:`ovsam_core.Cancelled` once :meth:`cancel` was called."""

    def __init__(self) -> None:
        self.done, self.total = 0, 0
        self.cancelled = threading.Event()

    def __call__(self, done: int, total: int) -> None:
        from ovsam_core import Cancelled

        self.done, self.total = int(done), int(total)
        if self.cancelled.is_set():
            raise Cancelled("cancelled")

    def cancel(self) -> None:
        self.cancelled.set()


class Jobs:
    """Runs callables in one worker thread; ``on_done``/``on_error`` run on the Qt thread."""

    def __init__(self, parent=None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ovsam")
        self._running: List[tuple] = []
        self._timer = QTimer(parent)
        self._timer.setInterval(20)
        self._timer.timeout.connect(self._poll)

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def submit(self, fn: Callable[[], Any], on_done: Callable[[Any], None], on_error: Callable[[BaseException], None],
               desc: str, steps: Optional[Steps] = None) -> Future:
        """Run ``fn`` in the worker; ``steps`` (updated by ``fn``) drives the progress bar, whose
        cancel button (napari's activity dock) cancels it."""
        from napari.utils import cancelable_progress

        pbar = cancelable_progress(total=0, desc=desc)
        fut = self._pool.submit(fn)
        self._running.append((fut, on_done, on_error, pbar, steps))
        self._timer.start()
        return fut

    def _poll(self) -> None:
        for _, _, _, pbar, steps in self._running:
            if steps is None:
                continue
            if pbar.is_canceled:
                steps.cancel()
            if steps.total and (pbar.total, pbar.n) != (steps.total, steps.done):
                pbar.total = steps.total
                pbar.update(steps.done - pbar.n)
        finished = [item for item in self._running if item[0].done()]
        self._running = [item for item in self._running if not item[0].done()]
        for fut, on_done, on_error, pbar, _ in finished:
            pbar.close()
            err = fut.exception()
            if err is not None:
                on_error(err)
            else:
                on_done(fut.result())
        if not self._running:
            self._stop_timer()

    def _stop_timer(self) -> None:
        try:
            self._timer.stop()
        except RuntimeError:  # "wrapped C/C++ object of type QTimer has been deleted"
            pass

    def wait(self, timeout: float = 60.0) -> None:
        """Block until idle, delivering results (for scripts and tests)."""
        from qtpy.QtWidgets import QApplication

        end = time.monotonic() + timeout
        while self._running:
            if time.monotonic() > end:
                raise TimeoutError("ovsam background work did not finish in time")
            for fut, *_ in list(self._running):
                try:
                    fut.result(timeout=0.02)
                except Exception:  # noqa: BLE001 - delivered by _poll
                    pass
            self._poll()
            QApplication.processEvents()

    def shutdown(self, *_) -> None:
        self._stop_timer()
        self._pool.shutdown(wait=False, cancel_futures=True)
