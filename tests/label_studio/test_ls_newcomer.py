"""What a new Label Studio user hit (issue 13), against real processes on 127.0.0.1: the data
folder of ``serve``, the gunicorn master's memory, a task without prompts, a PNG whose header
claims 50,000 x 50,000 pixels (and, in test_masks, polygons of a fragmented mask)."""
from __future__ import annotations

from ls_fixtures import *  # noqa: F401,F403 - fixtures (and the skip without the label-studio extra)

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
import zlib
from pathlib import Path

import pytest

from ls_helpers import SHAPES, config_xml, keypoint, ls_task, predict_body
from ls_server import label_studio_with_backend, ls_available, start_backend, stop

with warnings.catch_warnings():
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    LABEL_STUDIO_SERVER = pytest.mark.label_studio_server

W, H = 480, 360
CONFIG = config_xml(outputs=("brush", "polygon")).replace(' ovsam_skip="true"', "")


def ovsam_cmd():
    exe = Path(sys.executable).parent / "ovsam"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "ovsam_core.cli"]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LABEL_STUDIO", "OVSAM_LS")) and k not in ("MODEL_DIR", "XDG_DATA_HOME")}
    env.update(extra)
    return env


def png_header(w: int, h: int) -> bytes:
    """A PNG that claims w x h pixels (signature, IHDR, IEND; ~60 bytes, no pixel data)."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------ serve's data folder
def test_serve_check_writes_nothing_into_the_current_directory(tmp_path):
    cwd, xdg = tmp_path / "cwd", tmp_path / "xdg"
    cwd.mkdir()
    out = subprocess.run([*ovsam_cmd(), "label-studio", "serve", "--check", "--model", "ovsam-test", "--device",
                          "cpu"], cwd=cwd, env=clean_env(XDG_DATA_HOME=str(xdg)), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert list(cwd.iterdir()) == []
    db = xdg / "ovsam" / "label-studio" / "ovsam-label-studio.sqlite3"
    assert db.is_file()
    assert f"learned prototypes: {db}" in out.stderr  # the log says where

    chosen = tmp_path / "chosen"
    out = subprocess.run([*ovsam_cmd(), "label-studio", "serve", "--check", "--model", "ovsam-test", "--device",
                          "cpu", "--data-dir", str(chosen)], cwd=cwd, env=clean_env(XDG_DATA_HOME=str(xdg)),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (chosen / "ovsam-label-studio.sqlite3").is_file() and list(cwd.iterdir()) == []


def test_serve_refuses_a_mistyped_vocabulary_path(tmp_path):
    out = subprocess.run([*ovsam_cmd(), "label-studio", "serve", "--check", "--model", "ovsam-test", "--vocab",
                          "/nonexistent/my_vocab.txt", "--data-dir", str(tmp_path)], env=clean_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "vocabulary file not found: /nonexistent/my_vocab.txt" in out.stderr


# ------------------------------------------------------------------------------ gunicorn master memory
def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _children(pid: int):
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc (Linux)")
def test_gunicorn_master_does_not_load_torch(tmp_path):
    pytest.importorskip("gunicorn")
    be = start_backend(tmp_path, {"MODEL_DIR": str(tmp_path / "model")},
                       ["--model", "ovsam-test", "--device", "cpu", "--server", "gunicorn"])
    try:
        end = time.time() + 120
        while time.time() < end:
            with urllib.request.urlopen(be.url + "/health", timeout=10) as r:
                if json.loads(r.read())["model_loaded"]:
                    break
            time.sleep(0.5)
        master = be.proc.pid
        (worker,) = _children(master)
        master_maps = Path(f"/proc/{master}/maps").read_text()
        worker_maps = Path(f"/proc/{worker}/maps").read_text()
        m_rss, w_rss = _rss_mb(master), _rss_mb(worker)
        print(f"gunicorn master RSS {m_rss:.0f} MB, worker RSS {w_rss:.0f} MB")
        assert "libtorch" in worker_maps
        assert "libtorch" not in master_maps, "the gunicorn master has loaded torch"
        assert m_rss < 100, f"gunicorn master RSS {m_rss:.0f} MB"
    finally:
        stop(be.proc)


# ------------------------------------------------------------------------------ real Label Studio
@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    if not ls_available():
        pytest.skip("no Label Studio server venv: run .ci/setup-label-studio.sh")
    images = {"imgs/shapes.png": SHAPES.read_bytes(), "imgs/huge.png": png_header(50000, 50000)}
    # pre-labelling off: these tests are about tasks without prompts (test_ls_prelabel.py has it on)
    with label_studio_with_backend(tmp_path_factory.mktemp("ls-newcomer"), images, {"OVSAM_LS_AUTO": "off"}) as both:
        yield both


@LABEL_STUDIO_SERVER
def test_retrieve_predictions_after_drawing_boxes(servers):
    """A task without prompts gets no (empty) prediction, so retrieving again after the user
    drew a box segments it."""
    ls, be = servers
    pid = ls.api("POST", "/api/projects", {"title": "later boxes", "label_config": CONFIG})["id"]
    ls.api("POST", "/api/storages/localfiles", {"project": pid, "path": str(ls.files_root / "imgs"),
                                                "use_blob_urls": True, "title": "images"})
    ls.api("POST", f"/api/projects/{pid}/import", [{"data": {"image": "/data/local-files/?d=imgs/shapes.png"}}])
    (task,) = ls.api("GET", f"/api/tasks?project={pid}")["tasks"]
    ml = ls.api("POST", "/api/ml", {"url": be.url, "project": pid, "title": "ovsam", "is_interactive": True})
    assert ml["state"] == "CO", ml

    def retrieve():
        r = ls.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
                   {"selectedItems": {"all": True, "excluded": []}})
        assert r.get("processed_items") == 1, r

    retrieve()
    assert ls.api("GET", f"/api/predictions?task={task['id']}") == []  # no prompts: nothing stored
    box = {"x": 54.1667, "y": 41.6667, "width": 33.3333, "height": 41.6667, "rotation": 0,
           "rectanglelabels": ["square"]}
    ls.api("POST", f"/api/tasks/{task['id']}/annotations", {"result": [
        {"id": "r1", "from_name": "prompt_box", "to_name": "image", "type": "rectanglelabels",
         "original_width": W, "original_height": H, "image_rotation": 0, "value": box}]})
    retrieve()
    preds = ls.api("GET", f"/api/predictions?task={task['id']}")
    assert len(preds) == 1 and preds[0]["result"], preds
    assert {r["type"] for r in preds[0]["result"]} == {"brushlabels", "polygonlabels"}


@LABEL_STUDIO_SERVER
def test_huge_png_header_is_refused_with_the_pixel_limit(servers):
    ls, be = servers
    ctx = {"result": [keypoint(100, 100, W, H)]}
    body = predict_body([ls_task(image="/data/local-files/?d=imgs/huge.png")], CONFIG, ctx)
    req = urllib.request.Request(be.url + "/predict", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=60)
    assert e.value.code == 413
    msg = json.loads(e.value.read())["error"]
    assert "50000x50000" in msg and "100000000 pixel limit" in msg and "MAX_IMAGE_PIXELS = None" not in msg


def _readme_ls_connect_line() -> str:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("### Label Studio\n"):]
    section = section[:section.index("\n### ")]
    (line,) = [ln for ln in section.splitlines() if "ovsam label-studio connect" in ln]
    return line[line.index("ovsam label-studio connect"):]


@LABEL_STUDIO_SERVER
def test_readme_connect_command_gives_a_named_mask(servers):
    """Step 3 of the README's quick start against the running Label Studio: `connect` makes a
    project of a folder under LOCAL_FILES_DOCUMENT_ROOT, connected to the backend; a smart
    click then comes back as a brush mask labelled with a project label."""
    import shlex

    ls, be = servers
    argv = shlex.split(_readme_ls_connect_line())[1:]  # label-studio connect examples --model ovsam-shapes
    assert argv[:3] == ["label-studio", "connect", "examples"]
    argv[argv.index("--model") + 1] = "ovsam-test"
    folder = ls.files_root / "examples"
    folder.mkdir(exist_ok=True)
    shutil.copy(SHAPES, folder / "shapes.png")
    env = clean_env(LABEL_STUDIO_URL=ls.url, LABEL_STUDIO_API_KEY=ls.token,
                    LOCAL_FILES_DOCUMENT_ROOT=str(ls.files_root))
    out = subprocess.run([*ovsam_cmd(), *argv, "--backend-url", be.url], cwd=ls.files_root, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[1].rstrip(":"))
    project = ls.api("GET", f"/api/projects/{pid}")
    (task,) = ls.api("GET", f"/api/tasks?project={pid}")["tasks"]
    (ml,) = ls.api("GET", f"/api/ml?project={pid}")
    assert ml["url"] == be.url and ml["is_interactive"]
    assert "<BrushLabels" in project["label_config"] and 'smart="true"' in project["label_config"]
    ctx = {"result": [{"original_width": W, "original_height": H, "image_rotation": 0,
                       "value": {"x": 27.0, "y": 42.0, "width": 0.5, "keypointlabels": ["person"]},
                       "is_positive": True, "id": "kp1", "from_name": "kp", "to_name": "image",
                       "type": "keypointlabels", "origin": "manual"}]}
    res = ls.api("POST", f"/api/ml/{ml['id']}/interactive-annotating", {"task": task["id"], "context": ctx})
    (brush,) = [r for r in res["data"]["result"] if r["type"] == "brushlabels"]
    label = brush["value"]["brushlabels"][0]
    assert f'value="{label}"' in project["label_config"]  # a project label (ovsam-test: the coco classes)
