"""Host-neutral pieces of a model service (an ML backend, a plugin server): counters, process
memory, a byte-bounded LRU, a model loaded once on first use, and settings from environment
variables. No web framework, no host application.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import fields
from typing import Any, Callable, Dict, Generic, Hashable, Mapping, Optional, Tuple, Type, TypeVar

T = TypeVar("T")


class Metrics:
    """Thread-safe named counters (``GET /metrics``); ``started`` is the creation time (epoch s)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.counters: Dict[str, float] = {}

    def add(self, name: str, value: float = 1.0) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0.0) + value

    def snapshot(self) -> Dict[str, float]:
        with self._lock:
            return dict(self.counters)


def rss_bytes() -> int:
    """Resident memory of this process in bytes (Linux ``/proc``; peak RSS elsewhere; 0 if unknown)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # pragma: no cover - non-Linux
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except Exception:  # noqa: BLE001
        return 0


class BytesLRU(Generic[T]):
    """Thread-safe LRU bounded by the summed ``size(value)`` (bytes); a value over half the
    budget is not kept."""

    def __init__(self, max_bytes: int, size: Callable[[T], int]) -> None:
        self.max_bytes = int(max_bytes)
        self._size = size
        self._items: "OrderedDict[Hashable, T]" = OrderedDict()
        self.nbytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Optional[T]:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: Hashable, value: T) -> None:
        n = self._size(value)
        if n > self.max_bytes // 2:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= self._size(old)
            self._items[key] = value
            self.nbytes += n
            while self.nbytes > self.max_bytes and self._items:
                _, gone = self._items.popitem(last=False)
                self.nbytes -= self._size(gone)

    def __len__(self) -> int:
        return len(self._items)


class LazyModel(Generic[T]):
    """``load()`` called once, on first :meth:`get` (thread-safe); its failure is kept in
    :attr:`error` (``"Type: message"``) and re-raised, so a service can report it on health checks."""

    def __init__(self, load: Callable[[], T], value: Optional[T] = None) -> None:
        self._load = load
        self.value = value
        self.error: Optional[str] = None
        self.seconds = 0.0
        self._lock = threading.Lock()

    def get(self) -> T:
        if self.value is not None:
            return self.value
        with self._lock:
            if self.value is None:
                t0 = time.time()
                try:
                    self.value = self._load()
                except Exception as e:
                    self.error = f"{type(e).__name__}: {e}"
                    raise
                self.error, self.seconds = None, time.time() - t0
        return self.value

    def start(self, on_error: Callable[[Exception], None] = lambda e: None) -> threading.Thread:
        """Load in a daemon thread (e.g. when a worker process starts)."""
        def run() -> None:
            try:
                self.get()
            except Exception as e:  # noqa: BLE001 - kept in .error
                on_error(e)

        t = threading.Thread(target=run, name="ovsam-load", daemon=True)
        t.start()
        return t


class JobQueue:
    """Jobs run one at a time by ``handler(job)`` in a daemon thread started on first :meth:`put`
    (a webhook answers at once, the work happens later). A failing job calls ``on_error(job, e)``
    and the queue goes on; a full queue refuses the job (:meth:`put` returns False)."""

    def __init__(self, handler: Callable[[Any], Any], maxsize: int = 256,
                 on_error: Callable[[Any, Exception], None] = lambda job, e: None) -> None:
        import queue

        self._handler, self._on_error = handler, on_error
        self._q: "queue.Queue[Any]" = queue.Queue(maxsize=maxsize)
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def put(self, job: Any) -> bool:
        """Queue ``job`` (not None); False when the queue is full."""
        import queue

        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="ovsam-jobs", daemon=True)
                self._thread.start()
        try:
            self._q.put_nowait(job)
        except queue.Full:
            return False
        return True

    def _work(self) -> None:
        while True:
            job = self._q.get()
            try:
                if job is None:
                    return
                self._handler(job)
            except Exception as e:  # noqa: BLE001 - one bad job must not stop the queue
                self._on_error(job, e)
            finally:
                self._q.task_done()

    def qsize(self) -> int:
        return self._q.qsize()

    def flush(self, timeout: float = 60.0) -> None:
        """Wait (at most ``timeout`` s) until the queued jobs are done."""
        end = time.time() + timeout
        while self._q.unfinished_tasks and time.time() < end:
            time.sleep(0.01)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread after the queued jobs."""
        if self._thread is not None and self._thread.is_alive():
            self._q.put(None)
            self._thread.join(timeout=timeout)


EnvTable = Mapping[str, Tuple[str, Callable[[str], Any]]]


def parse_bool(v: str) -> bool:
    """``1/true/yes/on`` (any case) -> True, anything else False."""
    return v.strip().lower() in ("1", "true", "yes", "on")


def dataclass_from_env(cls: Type[T], table: EnvTable, env: Optional[Mapping[str, str]] = None, **overrides) -> T:
    """A settings dataclass ``cls`` from environment variables (``table``: name -> (field,
    parser); later names win), then non-None ``overrides``. ``ValueError`` names a bad variable,
    ``TypeError`` unknown fields."""
    env = os.environ if env is None else env
    kw: Dict[str, Any] = {}
    for name, (attr, parse) in table.items():
        value = env.get(name)
        if value is None or value == "":
            continue
        try:
            kw[attr] = parse(value)
        except ValueError:
            raise ValueError(f"bad value for {name}: {value!r}") from None
    kw.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(kw) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise TypeError(f"unknown settings: {sorted(unknown)}")
    return cls(**kw)


def dataclass_to_env(settings: Any, table: EnvTable) -> Dict[str, str]:
    """The environment that reproduces ``settings`` through :func:`dataclass_from_env` (the last
    variable of each field; booleans as ``true``/``false``, tuples comma-joined, None left out)."""
    out: Dict[str, str] = {}
    seen = set()
    for name, (attr, _) in reversed(list(table.items())):
        if attr in seen:
            continue
        seen.add(attr)
        v = getattr(settings, attr)
        if v is None:
            continue
        out[name] = ("true" if v else "false") if isinstance(v, bool) else ",".join(v) if isinstance(v, tuple) else str(v)
    return out
