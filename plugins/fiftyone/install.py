"""``ovsam fiftyone install``: put the ``@ovsam/ovsam`` plugin (and the zoo source) where FiftyOne looks.

A pip install cannot register a FiftyOne plugin: FiftyOne finds plugins as folders holding a
``fiftyone.yml`` under ``fo.config.plugins_dir`` (``FIFTYONE_PLUGINS_DIR``). The installed
plugin folder holds ``fiftyone.yml``, this package's ``__init__.py`` (whose ``register(p)``
imports the operators from the installed ``ovsam`` package, so code and plugin never drift
apart) and the README. The optional zoo source goes to ``fo.config.model_zoo_dir``
(``FIFTYONE_MODEL_ZOO_DIR``), where ``foz.load_zoo_model("ovsam-lvis")`` finds it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ovsam_core import install_files

HERE = Path(__file__).resolve().parent
PLUGIN_NAME = "@ovsam/ovsam"
PLUGIN_FILES = ("fiftyone.yml", "__init__.py", "README.md")
ZOO_SUBDIR = "ovsam"
ZOO_FILES = ("manifest.json", "__init__.py")


class InstallError(ValueError):
    """The target exists and overwrite was not given, or the source files are missing."""


def _existing_plugin_dir(name: str) -> Optional[Path]:
    import fiftyone.plugins as fop

    for p in fop.list_plugins(enabled="all", builtin="all"):
        if p.name == name:
            return Path(p.directory)
    return None


def install_plugin(plugins_dir=None, overwrite: bool = False) -> Path:
    """Copy the plugin into ``plugins_dir`` (default ``fo.config.plugins_dir``); returns its folder.

    Raises:
        InstallError: a plugin named ``@ovsam/ovsam`` is already there and ``overwrite`` is False.
    """
    import fiftyone as fo
    import fiftyone.plugins as fop

    if plugins_dir is not None:
        fo.config.plugins_dir = str(Path(plugins_dir).expanduser().resolve())
    if not fo.config.plugins_dir:
        raise InstallError("FiftyOne has no plugins directory: set FIFTYONE_PLUGINS_DIR or pass --plugins-dir")
    files = [HERE / f for f in PLUGIN_FILES if (HERE / f).is_file()]
    if not any(f.name == "fiftyone.yml" for f in files):
        raise InstallError(f"fiftyone.yml is missing from {HERE}; reinstall ovsam with the fiftyone extra")
    existing = _existing_plugin_dir(PLUGIN_NAME)
    if existing is not None and not overwrite:
        raise InstallError(f"the {PLUGIN_NAME} plugin is already installed at {existing}; use --force to replace it")
    Path(fo.config.plugins_dir).mkdir(parents=True, exist_ok=True)
    out = fop.create_plugin(PLUGIN_NAME, from_files=[str(f) for f in files], overwrite=overwrite)
    return Path(out)


def install_zoo_source(model_zoo_dir=None, overwrite: bool = False) -> Path:
    """Copy the remote-zoo source (``manifest.json`` + ``__init__.py``) into the model zoo folder.

    Afterwards ``foz.load_zoo_model("ovsam-lvis", vocabulary=...)`` returns an
    :class:`~ovsam_plugins.fiftyone.model.OVSAMModel` (weights go to ovsam's own cache).
    """
    import fiftyone as fo

    if model_zoo_dir is not None:
        fo.config.model_zoo_dir = str(Path(model_zoo_dir).expanduser().resolve())
    try:
        return install_files(HERE / "zoo", ZOO_FILES, Path(fo.config.model_zoo_dir) / ZOO_SUBDIR, overwrite=overwrite,
                             what="the ovsam zoo source")
    except OSError as e:  # exists (without overwrite) or a missing source file
        raise InstallError(str(e)) from None
