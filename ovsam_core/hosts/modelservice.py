"""The model of a service (an ML backend, a plugin server) and its answers, one per request item.

A labelling host calls a service over HTTP; the service holds one model, loads it on first use
(or in the background while the process starts), serialises the model calls, counts what it
did, says on its health check whether the model is loaded (and why not), and answers a request
of many items (tasks, samples) item by item: one bad item must not fail the others, and items
left when the caller stops waiting are not run. No web framework, no host application:
:class:`ServiceError` carries the HTTP status the service's routes answer with (:func:`service_errors`
turns a block's errors into one); :func:`request_body`, :func:`credentials_match` and
:func:`error_answer` are what a route does with a request's body, its basic-auth credentials and
an exception, whatever the web framework.
"""
from __future__ import annotations

import hmac
import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Generic, Iterator, List, Optional, Sequence, Tuple, TypeVar

from .serving import LazyModel, Metrics, json_object, overrun_note

T = TypeVar("T")
R = TypeVar("R")


class ServiceError(Exception):
    """A request a service refuses or cannot answer: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@contextmanager
def service_errors(errors: Tuple[type, ...] = (ValueError,), status: int = 400, prefix: str = "",
                   metrics: Optional[Metrics] = None) -> Iterator[None]:
    """Turn ``errors`` raised inside the block into a :class:`ServiceError`: ``prefix`` + the
    error's message, with the error's own ``status`` attribute if it has one, else ``status``
    (``metrics``: counts it as ``errors``). Other exceptions pass unchanged."""
    try:
        yield
    except errors as e:
        if metrics is not None:
            metrics.add("errors")
        raise ServiceError(prefix + str(e), getattr(e, "status", status)) from None


def internal_error(e: BaseException) -> str:
    """What a caller is told about an unexpected exception (its type only; details go to the log)."""
    return f"internal error ({type(e).__name__}); see the backend's log"


def request_body(raw: Any) -> Dict[str, Any]:
    """A request's body (JSON bytes or text) as a dict; a 400 :class:`ServiceError` says what is wrong."""
    with service_errors():
        return json_object(raw, "the request body")


def credentials_match(user: Optional[str], password: Optional[str], want_user: str, want_password: str) -> bool:
    """Whether a request's basic-auth ``user`` / ``password`` (None: not sent) are the wanted ones
    (compared in constant time)."""
    return (hmac.compare_digest((user or "").encode(), want_user.encode())
            and hmac.compare_digest((password or "").encode(), want_password.encode()))


def error_answer(e: BaseException, http_errors: Tuple[type, ...] = (), too_large: Optional[str] = None,
                 log: Optional[logging.Logger] = None) -> Tuple[int, str]:
    """``(status, message)`` that a service answers an exception with: a :class:`ServiceError`'s own;
    a web framework's HTTP error (``http_errors``, e.g. Werkzeug's ``HTTPException``: its ``code``
    and ``description``; a 413 says ``too_large`` when given); anything else a 500 with
    :func:`internal_error` (the traceback goes to ``log``, never to the caller)."""
    if isinstance(e, ServiceError):
        return e.status, str(e)
    if isinstance(e, http_errors):
        status = getattr(e, "code", None) or 500
        if status == 413 and too_large:
            return status, too_large
        return status, getattr(e, "description", None) or getattr(e, "name", None) or str(e)
    (log or logging.getLogger(__name__)).error("internal error", exc_info=e)
    return 500, internal_error(e)


class ServedModel(Generic[T]):
    """A service's model: ``load()`` once, on first :meth:`get` or in the background
    (:meth:`warmup`); :attr:`lock` serialises the model calls; :attr:`metrics` counts what the
    service did.

    Args:
        name: the model's name in messages (e.g. ``"ovsam-lvis"``).
        load: builds the model (e.g. an :class:`ovsam_core.Predictor`).
        value: an already loaded model (then ``load`` is never called).
        log: where loading is logged (default: this module's logger).
    """

    def __init__(self, name: str, load: Callable[[], T], value: Optional[T] = None,
                 log: Optional[logging.Logger] = None) -> None:
        self.name, self._build = name, load
        self.log = log or logging.getLogger(__name__)
        self.lock = threading.Lock()
        self.metrics = Metrics()
        self._lazy: LazyModel[T] = LazyModel(self._load, value)

    def _load(self) -> T:
        self.log.info("loading model %s", self.name)
        t0 = time.time()
        value = self._build()
        self.log.info("model %s loaded (%.1f s)", self.name, time.time() - t0)
        return value

    @property
    def value(self) -> Optional[T]:
        """The model, or None while it is not loaded (never loads it)."""
        return self._lazy.value

    @property
    def loaded(self) -> bool:
        return self._lazy.value is not None

    @property
    def error(self) -> Optional[str]:
        """``"Type: message"`` of the last failed load, else None."""
        return self._lazy.error

    def get(self) -> T:
        """The model, loaded on first use; :class:`ServiceError` (503) when it cannot be loaded."""
        try:
            return self._lazy.get()
        except Exception as e:  # noqa: BLE001 - reported on health checks and to the caller
            raise ServiceError(f"the model {self.name!r} could not be loaded: {e}", 503) from None

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Count a request that the block answers: ``{name}_requests`` and ``{name}_seconds`` (not
        when the block raises)."""
        t0 = time.time()
        yield
        self.metrics.add(f"{name}_seconds", time.time() - t0)
        self.metrics.add(f"{name}_requests")

    def warmup(self) -> threading.Thread:
        """Load in a daemon thread (call once the worker process has started); a failure is logged."""
        return self._lazy.start(lambda e: self.log.error("the model %r could not be loaded: %s", self.name, e))

    def status(self, **fields: Any) -> Dict[str, Any]:
        """A health check's answer (never loads the model): ``{"status": "UP", **fields, "model",
        "model_loaded"}`` and ``"model_error"`` after a failed load."""
        out = {"status": "UP", **fields, "model": self.name, "model_loaded": self.loaded}
        return {**out, "model_error": self.error} if self.error else out

    def report(self, **fields: Any) -> Dict[str, Any]:
        """A metrics endpoint's answer: ``{"model", **fields, "model_loaded"}`` and
        :meth:`Metrics.report` (uptime, RSS, counters, the loaded predictor's embedding cache)."""
        return {"model": self.name, **fields, "model_loaded": self.loaded, **self.metrics.report(self.value)}


def answer_each(items: Sequence[T], answer: Callable[[T], R], failed: Callable[[T, str], R], *,
                user_errors: Tuple[type, ...] = (ServiceError,), limit: float = float("inf"), limit_name: str = "",
                hint: str = "", log: Optional[logging.Logger] = None, metrics: Optional[Metrics] = None, unit: str = "item",
                name: Callable[[T], Any] = lambda item: item, failure: str = "no answer") -> List[R]:
    """``answer(item)`` of each item, in order, started now; one bad item does not fail the others.

    An item whose ``answer`` raises gets ``failed(item, message)`` and counts in ``metrics``
    (``errors``): a ``user_errors`` exception's own message (logged as a warning), anything else
    :func:`internal_error` (the traceback is logged, never answered). Once ``limit`` seconds
    have passed the items left get ``failed(item, note)`` with :func:`overrun_note`'s note
    (``limit_name``: the setting; ``hint``: how to do large jobs instead), warned on ``log``.

    Args:
        unit / name: how items are called in the log (``"task"``, ``lambda t: t["id"]``).
        failure: what the log says an item did not get (e.g. ``"no prediction"``).
    """
    log = log or logging.getLogger(__name__)
    started, out = time.time(), []
    for n, item in enumerate(items):
        late = overrun_note(started, n, len(items), limit, hint, log, unit=unit, limit_name=limit_name)
        if late:
            return out + [failed(it, late) for it in items[n:]]
        try:
            out.append(answer(item))
        except Exception as e:  # noqa: BLE001 - one bad item must not fail the others
            if metrics is not None:
                metrics.add("errors")
            if isinstance(e, user_errors):
                log.warning("%s %s: %s: %s", unit, name(item), failure, e)
                out.append(failed(item, str(e)))
            else:
                log.exception("%s %s: %s", unit, name(item), failure)
                out.append(failed(item, internal_error(e)))
    return out
