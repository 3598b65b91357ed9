"""Keyword options of a host-facing class, checked against the dataclass that holds them.

Hosts build ovsam objects from mappings a user wrote (a zoo's ``load_zoo_model(**kwargs)``, a
config dict): a misspelt option must fail with the list of the accepted ones, not be ignored or
end in Python's bare ``unexpected keyword argument``. :func:`check_recognition_options` checks
the recognition options of :meth:`ovsam_core.Predictor.predict` before a model is loaded.
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any, Mapping, Optional, Type, TypeVar

T = TypeVar("T")


def dataclass_from_mapping(cls: Type[T], values: Mapping[str, Any], what: str = "") -> T:
    """``cls(**values)`` for a dataclass ``cls``.

    Raises:
        TypeError: ``cls`` is not a dataclass, or ``values`` hold keys that are not its fields
            (the message names them, ``what`` the option's owner, and lists the accepted ones).
    """
    if not (is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"{cls!r} is not a dataclass")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"unknown {what or cls.__name__} option(s) {', '.join(unknown)}; "
                        f"accepted: {', '.join(sorted(known))}")
    return cls(**values)


def check_recognition_options(mode: Optional[str], top_k: int) -> None:
    """``ValueError`` for a recognition ``mode`` other than None (the model's), ``head`` or
    ``fused``, or ``top_k`` (alternatives kept per object) below 1."""
    if mode not in (None, "head", "fused"):
        raise ValueError(f"unknown mode {mode!r}; choose head or fused")
    if int(top_k) < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
