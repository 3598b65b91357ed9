"""Command-line options that the core's commands and the host adapters' commands share.

:func:`add_model_options`: how the model is loaded (``ovsam predict``, ``ovsam label-studio serve``);
:func:`add_prelabel_options` / :func:`prelabel_overrides`: a host's pre-labelling of images
without prompts (``ovsam label-studio prelabel``); :func:`grid_options`: the point grid of the
prompt-free modes; :func:`option` / :func:`add_dataclass_options` / :func:`dataclass_overrides`: a
settings dataclass declares each setting's command-line option once, on its field. Only argparse;
nothing is loaded when they run.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Dict, Optional, Type


def add_model_options(s: argparse.ArgumentParser, default_model: str = "ovsam-lvis", *, unset: bool = False,
                      quiet: bool = True) -> None:
    """``--model --weights-dir --weights --device --dtype --no-download`` (and ``-q``), shared by the core's
    commands and the host adapters' (``ovsam label-studio serve``).

    ``unset``: every option defaults to None (``--no-download``: False), so that the caller's own
    settings (:class:`~ovsam_core.PredictorOptions` from environment variables) fill what the
    command line leaves out; the help names their defaults. ``--dtype`` takes the runtime's choices (``auto``, ``fp32``, ``ov-bf16`` ...).
    """
    from ..runtime.auto import CHOICES as dtype_choices

    def default(v):
        return None if unset else v

    s.add_argument("--model", default=default(default_model),
                   help=f"registered model (default {default_model}; see `ovsam models`)")
    s.add_argument("--weights-dir", type=Path, help="folder holding the model's files by their official names")
    s.add_argument("--weights", type=Path, help="a fused .safetensors file written by `ovsam convert`")
    s.add_argument("--device", default=default("auto"), help="auto, cpu, cuda or mps (default auto)")
    s.add_argument("--dtype", default=default("auto"), choices=list(dtype_choices),
                   help="image-encoder precision (default auto: the fastest "
                        "path that keeps the answers on this machine; fp32 is the parity reference; `ovsam runtime` "
                        "shows what auto picks and why)")
    s.add_argument("--no-download", action="store_true", help="use local files only")
    if quiet:
        s.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")


def grid_options(g, unset: bool = False) -> None:
    """``--points-per-side`` / ``--min-score`` of a grid of point prompts (``unset``: default None)."""
    g.add_argument("--points-per-side", type=int, default=None if unset else 32,
                   help="grid points per image side (default 32)")
    g.add_argument("--min-score", type=float, default=None if unset else 0.5,
                   help="minimum label probability (default 0.5)")


def add_prelabel_options(s: argparse.ArgumentParser) -> None:
    """``--auto`` / ``--points-per-side`` / ``--min-score``: a host's pre-labelling of images without
    prompts (:class:`~ovsam_core.PrelabelDefaults`); None unless given, so that
    :func:`prelabel_overrides` passes only what the command line sets over the host's own settings."""
    from .prelabel import AUTO_MODES

    g = s.add_argument_group("pre-labelling of images without prompts")
    g.add_argument("--auto", choices=list(AUTO_MODES), default=None,
                   help="find the host's labels (default), everything (the model's vocabulary), or off")
    grid_options(g, unset=True)


def prelabel_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """``{"auto", "points_per_side", "min_score"}`` as given by :func:`add_prelabel_options` (None: not given)."""
    return {k: getattr(args, k) for k in ("auto", "points_per_side", "min_score")}


def option(help: str, *flags: str, minimum: Optional[float] = None, **argparse_kw: Any) -> Dict[str, Any]:
    """A settings field's ``metadata`` (``field(default=..., metadata=option(...))``) for
    :func:`add_dataclass_options`: the option's help, its flags (default ``--<field-name>``) and
    other keywords of ``add_argument`` (``type``, ``choices``, ...); ``choices`` and ``minimum``
    are also checked on the settings object itself by :func:`check_options` (values from the
    environment too)."""
    return {"cli": {"help": help, "flags": flags, **argparse_kw}, "minimum": minimum}


def check_options(settings: Any) -> None:
    """``ValueError`` naming the first field of the dataclass object ``settings`` whose value is not
    one of its :func:`option`'s ``choices`` or is below its ``minimum``."""
    for f in dataclasses.fields(settings):
        value, minimum = getattr(settings, f.name), f.metadata.get("minimum")
        choices = f.metadata.get("cli", {}).get("choices")
        if choices and value not in choices:
            raise ValueError(f"{f.name} must be {' or '.join(map(repr, choices))}, got {value!r}")
        if minimum is not None and value < minimum:
            raise ValueError(f"{f.name} must be >= {minimum}, got {value}")


def add_dataclass_options(parser: argparse.ArgumentParser, cls: Type[Any], *names: str) -> None:
    """Add the options of the fields ``names`` of the dataclass ``cls``, as their :func:`option`
    metadata says. ``dest`` is the field's name and the default None (not given, so that the
    caller's settings, e.g. from environment variables, fill it: :func:`dataclass_overrides`); a
    ``bool`` field's ``--no-...`` flag stores False (another flag True), an ``int`` / ``float``
    field's value is converted."""
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    for name in names:
        spec = dict(by_name[name].metadata["cli"])
        flags = spec.pop("flags") or ("--" + name.replace("_", "-"),)
        kind = str(getattr(by_name[name].type, "__name__", by_name[name].type))  # a type, or its name (annotations)
        if kind == "bool":
            spec.setdefault("action", "store_false" if flags[0].startswith("--no-") else "store_true")
        elif kind in ("int", "float"):
            spec.setdefault("type", int if kind == "int" else float)
        parser.add_argument(*flags, dest=name, default=None, **spec)


def dataclass_overrides(args: argparse.Namespace, cls: Type[Any]) -> Dict[str, Any]:
    """The fields of the dataclass ``cls`` that ``args`` has and the command line gave (not None);
    a ``Path`` becomes a ``str``."""
    given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(cls)}
    return {k: str(v) if isinstance(v, Path) else v for k, v in given.items() if v is not None}
