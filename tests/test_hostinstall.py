"""Installing into a host (`ovsam_core.hosts.hostinstall`) and keyword options (`ovsam_core.hosts.keywords`)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from ovsam_core import dataclass_from_mapping, install_files, record_model_download, require_package


def test_require_package_names_the_pip_extra():
    assert require_package("json", "x").dumps([1]) == "[1]"
    with pytest.raises(ValueError, match=r'Nohost is not installed: pip install "ovsam\[nohost\]"'):
        require_package("ovsam_no_such_host_pkg", "nohost", "Nohost")


def test_install_files_copies_refuses_and_replaces(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.json").write_text("{}")
    (src / "b.py").write_text("x = 1\n")
    target = tmp_path / "zoo" / "ovsam"
    assert install_files(src, ["a.json", "b.py"], target) == target
    assert sorted(p.name for p in target.iterdir()) == ["a.json", "b.py"]
    (target / "old.txt").write_text("stale")
    with pytest.raises(FileExistsError, match="the zoo is already installed at .*--force"):
        install_files(src, ["a.json"], target, what="the zoo")
    assert (target / "old.txt").exists()   # nothing touched
    install_files(src, ["a.json"], target, overwrite=True)
    assert [p.name for p in target.iterdir()] == ["a.json"]
    with pytest.raises(FileNotFoundError, match="missing"):
        install_files(src, ["a.json", "gone.txt"], tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_record_model_download_writes_the_cached_files(tmp_path):
    path = tmp_path / "ovsam-test.json"
    files = record_model_download("ovsam-test", path)
    assert json.loads(path.read_text()) == {"model": "ovsam-test", "files": files}
    with pytest.raises(KeyError):
        record_model_download("no-such-model", tmp_path / "x.json")


@dataclass
class _Options:
    model: str = "m"
    top_k: int = 5


def test_dataclass_from_mapping_lists_accepted_options():
    assert dataclass_from_mapping(_Options, {"top_k": 3}) == _Options("m", 3)
    with pytest.raises(TypeError, match=r"unknown Model option\(s\) topk, x; accepted: model, top_k"):
        dataclass_from_mapping(_Options, {"topk": 3, "x": 1}, "Model")
    with pytest.raises(TypeError, match="not a dataclass"):
        dataclass_from_mapping(dict, {})


def test_check_recognition_options():
    from ovsam_core import check_recognition_options

    for mode in (None, "head", "fused"):
        check_recognition_options(mode, 1)
    with pytest.raises(ValueError, match="unknown mode 'fast'; choose head or fused"):
        check_recognition_options("fast", 5)
    with pytest.raises(ValueError, match="top_k must be >= 1, got 0"):
        check_recognition_options(None, 0)
