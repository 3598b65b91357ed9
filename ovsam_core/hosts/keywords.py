"""Keyword options of a host-facing class, checked against the dataclass that holds them.

Hosts build ovsam objects from mappings a user wrote (a zoo's ``load_zoo_model(**kwargs)``, a
config dict): a misspelt option must fail with the list of the accepted ones, not be ignored or
end in Python's bare ``unexpected keyword argument``. (The recognition options of
:meth:`ovsam_core.Predictor.predict` are checked before a model is loaded with
:func:`ovsam_core.predictor.check_recognition_options`.)
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any, Mapping, Type, TypeVar

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
