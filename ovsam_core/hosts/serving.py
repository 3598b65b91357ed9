"""Host-neutral pieces of a model service (an ML backend, a plugin server): counters, process
memory, a byte-bounded LRU, a cache of decoded images, a model loaded once on first use, a job
queue, a request's time budget, and settings from environment variables. No web framework, no
host application.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import fields
from typing import (Any, Callable, Dict, Generic, Hashable, Iterable, Mapping, Optional, Tuple, Type, TypeVar,
                    get_type_hints)

from .fetch import ImageTooLargeError, load_image_limited
from ..lru import SizedLRU
from ..images import ImageError, LoadedImage
from .safe_download import DownloadError

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

    def report(self, predictor: Any = None) -> Dict[str, Any]:
        """``uptime_seconds``, ``rss_bytes``, ``counters`` and, with a loaded ``predictor``, its
        ``embedding_cache`` (entries, bytes, encoder calls): what a ``/metrics`` endpoint shows."""
        out: Dict[str, Any] = {"uptime_seconds": round(time.time() - self.started, 3), "rss_bytes": rss_bytes(),
                               "counters": self.snapshot()}
        if predictor is not None:
            out["embedding_cache"] = {"entries": len(predictor.cache), "bytes": int(predictor.cache.nbytes),
                                      "encoder_calls": int(predictor.encoder_calls)}
        return out


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


class BytesLRU(SizedLRU[T]):
    """Thread-safe LRU bounded by the summed ``size(value)`` (bytes); a value over half the
    budget is not kept."""

    def __init__(self, max_bytes: int, size: Callable[[T], int]) -> None:
        super().__init__(max_bytes, size, max_item_fraction=0.5)


class ImageCache:
    """Decoded images by key (e.g. their URL), LRU-bounded by ``max_bytes`` of RGB pixels.

    :meth:`load` decodes untrusted bytes under a size and pixel limit; failures are
    :class:`DownloadError` with the HTTP status a service answers with (413 too large, 422
    unreadable); ``limit_hint`` (e.g. the setting to raise) is added to the 413 message.
    """

    def __init__(self, max_bytes: int, max_pixels: int, max_image_bytes: int, limit_hint: str = "",
                 metrics: Optional[Metrics] = None) -> None:
        self._lru: BytesLRU[LoadedImage] = BytesLRU(max_bytes, lambda im: im.rgb.nbytes)
        self.max_pixels, self.max_image_bytes = max_pixels, max_image_bytes
        self.limit_hint, self.metrics = limit_hint, metrics

    def load(self, key: Hashable, fetch: Callable[[], bytes]) -> LoadedImage:
        """The image cached under ``key``, else ``fetch()``'s bytes decoded (and cached)."""
        hit = self._lru.get(key)
        if hit is not None:
            if self.metrics is not None:
                self.metrics.add("image_cache_hits")
            return hit
        data = fetch()
        try:
            img = load_image_limited(data, self.max_pixels, self.max_image_bytes)
        except ImageTooLargeError as e:
            raise DownloadError(f"{e}{f' ({self.limit_hint})' if self.limit_hint else ''}", 413) from None
        except ImageError as e:
            raise DownloadError(f"unreadable image: {e}", 422) from None
        self._lru.put(key, img)
        return img

    def __len__(self) -> int:
        return len(self._lru)

    @property
    def nbytes(self) -> int:
        return self._lru.nbytes


def overrun_note(started: float, done: int, total: int, limit: float, hint: str, log: Optional[Any] = None, *,
                 unit: str = "item", limit_name: str = "") -> Optional[str]:
    """Why item ``done`` (0-based) of a request of ``total`` items started at ``started`` (epoch s)
    is not run: the caller stops waiting after ``limit`` s (the setting ``limit_name``); None
    while there is time. Warns on ``log`` (a ``logging.Logger``) with ``hint`` (how to do large
    jobs instead) after the first item when the whole request will outlast the limit, and when it did."""
    spent = time.time() - started
    if log is not None and done == 1 and spent * total > limit:
        log.warning("a request of %d %ss will take about %.0f s. %s", total, unit, spent * total, hint)
    if spent <= limit:
        return None
    if log is not None:
        log.warning("%d of %d %ss not run after %.0f s. %s", total - done, total, unit, spent, hint)
    return f"not run: the request took longer than the caller waits ({limit:.0f} s{', ' if limit_name else ''}{limit_name})"


def json_object(raw: Any, what: str, *, empty_ok: bool = False, example: str = "") -> Dict[str, Any]:
    """``raw`` (JSON text or bytes, or an already parsed value) as a dict; ``ValueError`` says
    what is wrong with ``what`` (e.g. ``the request body``): empty (unless ``empty_ok``: ``{}``),
    not JSON, or not an object (``example``: a valid one to show)."""
    if isinstance(raw, (str, bytes, bytearray)):
        if not raw.strip():
            raw = None
        else:
            try:
                raw = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as e:
                raise ValueError(f"{what} is not JSON: {e}") from None
    if raw is None or (empty_ok and not raw):
        if not empty_ok:
            raise ValueError(f"{what} is empty: expected a JSON object")
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{what} must be a JSON object{f', e.g. {example}' if example else ''}")
    return dict(raw)


def xml_text(raw: Any, what: str, max_chars: int = 1_000_000) -> str:
    """``raw`` as XML text a host may parse: ``ValueError`` says what is wrong with ``what`` (e.g.
    ``the label config``): not text or empty, longer than ``max_chars``, or declaring a DOCTYPE or
    ENTITY (refused outright: entity expansion and external entities are how XML parsers are attacked)."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"{what} is empty")
    if len(raw) > max_chars:
        raise ValueError(f"{what} is larger than {max_chars} characters")
    if re.search(r"<!(DOCTYPE|ENTITY)", raw, re.IGNORECASE):
        raise ValueError(f"{what} declares a DOCTYPE or ENTITY: refused (XML with them is not parsed)")
    return raw


class ProjectOptions:
    """Per-project options of a service (e.g. a host project's extra parameters): JSON objects,
    checked by ``check(options)`` (raise ``ValueError`` naming the bad key) when set, kept in
    memory and, with ``folder``, in ``<folder>/<project>.json`` so that other worker processes
    and restarts see them. ``name`` is how errors call them (e.g. ``extra_params``), ``example``
    a valid value they show."""

    def __init__(self, folder: Optional[str], check: Callable[[Mapping[str, Any]], Any] = lambda o: None,
                 name: str = "options", example: str = "") -> None:
        self.folder, self.check, self.name, self.example = folder, check, name, example
        self._options: Dict[str, Dict[str, Any]] = {}

    def parse(self, raw: Any) -> Dict[str, Any]:
        """A JSON object (or its text; empty: ``{}``), checked; ``ValueError`` says what is wrong."""
        options = json_object(raw, self.name, empty_ok=True, example=self.example)
        try:
            self.check(options)
        except ValueError as e:
            raise ValueError(f"{self.name}: {e}") from None
        return options

    def _path(self, project: str) -> str:
        return os.path.join(str(self.folder), f"{int(project) if project.isdigit() else 0}.json")

    def set(self, project: str, raw: Any, persist: bool = True) -> Dict[str, Any]:
        """Check and keep ``raw`` as the options of ``project`` (a numeric key)."""
        options = self._options[project] = self.parse(raw)
        if persist and self.folder:
            os.makedirs(str(self.folder), exist_ok=True)
            with open(self._path(project), "w") as f:
                json.dump(options, f)
        return options

    def get(self, project: str) -> Dict[str, Any]:
        """The options of ``project`` (``{}`` when none were set)."""
        if project not in self._options and self.folder and os.path.isfile(self._path(project)):
            with open(self._path(project)) as f:
                return json.load(f)
        return self._options.get(project, {})


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


def env_table(cls: Type[Any], prefix: str, *, before: Mapping[str, str] = {}, after: Mapping[str, str] = {},
              skip: Iterable[str] = (), parsers: Mapping[str, Callable[[str], Any]] = {}) -> Dict[str, Tuple[str, Callable[[str], Any]]]:
    """The env table of a settings dataclass for :func:`dataclass_from_env`: ``before`` (other
    programs' names: env name -> field), then ``<prefix><FIELD>`` for every field not in ``skip``,
    then ``after`` (later names win). Parsers: ``parsers[field]``, else by the field's type
    (``bool``: :func:`parse_bool`, ``int``, ``float``, anything else ``str``)."""
    hints = get_type_hints(cls)

    def parser(name: str) -> Callable[[str], Any]:
        if name in parsers:
            return parsers[name]
        t = hints[name]
        args = [a for a in getattr(t, "__args__", ()) if a is not type(None)]
        t = args[0] if getattr(t, "__origin__", None) is not None and len(args) == 1 else t
        return {bool: parse_bool, int: int, float: float}.get(t, str)

    skip = set(skip)
    names = [*before.items(), *((prefix + f.name.upper(), f.name) for f in fields(cls) if f.name not in skip),
             *after.items()]
    return {env: (attr, parser(attr)) for env, attr in names}


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
