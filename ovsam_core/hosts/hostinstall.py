"""Putting ovsam where a host application looks for it: its package, plugin files, model records.

A host adapter's install command needs the host's package (:func:`require_package`, an error
that says which pip extra to install), copies a few of its own files into a folder the host
scans (:func:`install_files`: refuses to replace an existing copy unless told to), and a host's
model zoo may keep a small record of a model whose weights live in ovsam's own cache
(:func:`record_model_download`).
"""
from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Dict, Iterable


def require_package(module: str, extra: str, name: str = "") -> ModuleType:
    """``import module``, or ``ValueError`` telling the user how to install it.

    Args:
        module: the host's top-level package (``fiftyone``); extra: ovsam's pip extra for it;
        name: how the host is called in the message (default ``module``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f'{name or module} is not installed: pip install "ovsam[{extra}]" ({e})') from None


def install_files(source: Path, names: Iterable[str], target: Path, *, overwrite: bool = False,
                  what: str = "the files") -> Path:
    """Copy ``source/<name>`` for each name into a fresh folder ``target``; returns ``target``.

    Raises:
        FileExistsError: ``target`` exists and ``overwrite`` is False (the message names it and
            says to use ``--force``); with ``overwrite`` the old folder is removed first.
        FileNotFoundError: a source file is missing (nothing is copied then).
    """
    source, target = Path(source), Path(target)
    files = [source / n for n in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{what}: missing {', '.join(missing)}; reinstall ovsam")
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{what} is already installed at {target}; use --force to replace it")
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for f in files:
        shutil.copy2(f, target / f.name)
    return target


def record_model_download(model: str, path) -> Dict[str, str]:
    """Download and verify a registered model's files into ovsam's cache and write a JSON record
    ``{"model", "files": {role: cached path}}`` to ``path`` (a host zoo's model file); returns
    the files."""
    from ..weights.hub import download_model
    from ..weights.registry import get_model_spec

    spec = get_model_spec(model)
    files = {k: str(v) for k, v in (download_model(spec) if spec.files else {}).items()}
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"model": model, "files": files}, f, indent=1)
    return files
