"""Errors and project keys of the backend (no model, no web framework)."""
from __future__ import annotations

from typing import Any, Mapping


class BackendError(Exception):
    """A request the backend refuses; answered as ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def project_key(project: Any) -> str:
    """``"12.1700000000"`` (what Label Studio sends to /predict), ``12`` or ``{"id": 12}`` -> ``"12"``."""
    if isinstance(project, Mapping):
        project = project.get("id")
    return "0" if project is None else (str(project).split(".", 1)[0].strip() or "0")
