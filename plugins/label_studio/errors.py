"""Errors, project keys and counters of the backend (no model, no web framework)."""
from __future__ import annotations

import threading
import time
from typing import Any, Dict, Mapping


class BackendError(Exception):
    """A request the backend refuses; answered as ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def project_key(project: Any) -> str:
    """``"12.1700000000"`` (what Label Studio sends to /predict), ``12`` or ``{"id": 12}`` -> ``"12"``."""
    if isinstance(project, Mapping):
        project = project.get("id")
    if project is None:
        return "0"
    return str(project).split(".", 1)[0].strip() or "0"


def _rss_bytes() -> int:
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


class Metrics:
    """Counters for ``GET /metrics`` (thread-safe)."""

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
