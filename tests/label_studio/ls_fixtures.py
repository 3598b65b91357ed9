"""Fixtures of the Label Studio backend tests (imported by each test module with
``from ls_fixtures import *``; this folder has no conftest.py on purpose: the core tests import
``conftest`` by module name, which a second conftest.py would shadow).

Importing this module skips the importing test module when the ``label-studio`` extra (Flask,
label-studio-sdk) is not installed.
"""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flask", reason="the label-studio extra is not installed: pip install -e '.[label-studio]'")
pytest.importorskip("label_studio_sdk", reason="the label-studio extra is not installed: pip install -e '.[label-studio]'")

from PIL import Image  # noqa: E402

SHAPES = Path(__file__).resolve().parents[2] / "examples" / "shapes.png"

__all__ = ["predictor", "docroot", "make_backend", "client_for", "client", "recorded"]


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def predictor():
    from ovsam_core import Predictor

    return Predictor("ovsam-test", device="cpu", progress=False)


@pytest.fixture()
def docroot(tmp_path) -> Path:
    """Local-files document root: ``shapes.png`` and ``imgs/shapes.png`` (the recorded tasks' path)."""
    d = tmp_path / "files"
    (d / "imgs").mkdir(parents=True)
    Image.open(SHAPES).save(d / "shapes.png")
    Image.open(SHAPES).save(d / "imgs" / "shapes.png")
    return d


@pytest.fixture()
def make_backend(tmp_path, predictor, docroot):
    """Backend factory: tiny model, synchronous learning, images from ``docroot``."""
    from ovsam_plugins.label_studio import Backend, settings_from_env

    made = []

    def make(**kw):
        opts = dict(model="ovsam-test", device="cpu", model_dir=str(tmp_path / "model"),
                    document_root=str(docroot), learn_async=False)
        opts.update(kw)
        b = Backend(settings_from_env({}, **opts), predictor=predictor)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture()
def client_for(make_backend):
    """``client_for(**settings) -> (flask test client, backend)``."""
    from ovsam_plugins.label_studio import create_app

    def make(**kw):
        b = make_backend(**kw)
        return create_app(backend=b).test_client(), b

    return make


@pytest.fixture()
def client(client_for):
    return client_for()[0]


@pytest.fixture(scope="session")
def recorded():
    """``recorded(name)``: a request body Label Studio 1.23.2 sent (tests/label_studio/data)."""
    import copy
    import json

    data = Path(__file__).resolve().parent / "data"
    cache = {}

    def load(name: str):
        if name not in cache:
            cache[name] = json.loads((data / f"ls-1.23.2-{name}.json").read_text())
        return copy.deepcopy(cache[name])

    return load
