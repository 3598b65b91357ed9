"""Image fetching: SSRF and path-traversal attempts are refused; sizes are capped; credentials go
to Label Studio only. Servers here are local fakes on 127.0.0.1."""
from __future__ import annotations

from ls_fixtures import *  # noqa: F401,F403 - fixtures (and the skip without the label-studio extra)

import base64
import json
import os

import pytest
from PIL import Image

from ovsam_core import safe_join
from ovsam_plugins.label_studio.fetch import ForbiddenImageSource, ImageFetcher, ImageFetchError
from ovsam_plugins.label_studio.settings import settings_from_env

from ls_helpers import SHAPES, FakeServer, config_xml, keypoint, ls_task, predict_body

PNG = SHAPES.read_bytes()
TOKEN = "0123456789abcdef0123456789abcdef01234567"
PAT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"


@pytest.fixture()
def ls():
    s = FakeServer()
    yield s
    s.close()


@pytest.fixture()
def other():
    s = FakeServer()
    yield s
    s.close()


def fetcher(**kw) -> ImageFetcher:
    return ImageFetcher(settings_from_env({}, **kw))


# ------------------------------------------------------------------------------------- SSRF
@pytest.mark.parametrize("ref", [
    "http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/x.png", "https://example.com/cat.png",
    "file:///etc/passwd", "gopher://127.0.0.1:25/x", "ftp://127.0.0.1/x.png", "/etc/passwd",
    "/static/../../etc/passwd", "//evil.example/x.png",
])
def test_ssrf_refused_without_any_request(ls, ref):
    f = fetcher(label_studio_url=ls.url, api_key=TOKEN)
    with pytest.raises(ForbiddenImageSource):
        f.fetch(ref)
    assert ls.requests == []


def test_other_local_ports_and_host_spellings_are_refused(ls, other):
    other.routes["/x.png"] = (200, {}, PNG)
    f = fetcher(label_studio_url=ls.url, api_key=TOKEN)
    for ref in (other.url + "/x.png", ls.url.replace("127.0.0.1", "localhost") + "/data/upload/1/x.png"):
        with pytest.raises(ForbiddenImageSource):
            f.fetch(ref)
    assert other.requests == [] and ls.requests == []


def test_allowlisted_host_is_fetched_without_credentials(ls, other):
    other.routes["/x.png"] = (200, {"Content-Type": "image/png"}, PNG)
    host_port = other.url.split("//")[1]
    f = fetcher(label_studio_url=ls.url, api_key=TOKEN, allowed_hosts=(host_port,))
    assert f.fetch(other.url + "/x.png") == PNG
    assert "Authorization" not in other.requests[0][2]


def test_redirects_are_checked_hop_by_hop(ls, other):
    other.routes["/x.png"] = (200, {}, PNG)
    ls.routes["/data/upload/1/a.png"] = (302, {"Location": other.url + "/x.png"}, b"")
    ls.routes["/data/upload/1/b.png"] = (302, {"Location": "http://169.254.169.254/latest"}, b"")
    ls.routes["/data/upload/1/c.png"] = (302, {"Location": "/data/upload/1/final.png"}, b"")
    ls.routes["/data/upload/1/final.png"] = (200, {}, PNG)
    f = fetcher(label_studio_url=ls.url, api_key=TOKEN)
    for ref in ("/data/upload/1/a.png", "/data/upload/1/b.png"):
        with pytest.raises(ForbiddenImageSource):
            f.fetch(ref)
    assert other.requests == []
    assert f.fetch("/data/upload/1/c.png") == PNG  # a redirect within Label Studio is fine


def test_cloud_storage_is_resolved_by_label_studio(ls):
    ls.routes["/tasks/7/presign/"] = (200, {}, PNG)
    ls.routes["/tasks/8/presign/"] = (302, {"Location": "https://127.0.0.1:1/bucket/x.png?sig=1"}, b"")
    ls.routes["/tasks/9/presign/"] = (302, {"Location": "https://10.0.0.1/bucket/x.png"}, b"")
    f = fetcher(label_studio_url=ls.url, api_key=TOKEN)
    assert f.fetch("s3://bucket/dir/x.png", task_id=7) == PNG
    assert ls.requests[0][1] == "/tasks/7/presign/?fileuri=s3%3A%2F%2Fbucket%2Fdir%2Fx.png"
    for tid in (8, 9):  # presigned redirects must go to public addresses
        with pytest.raises(ForbiddenImageSource, match="non-public"):
            f.fetch("gs://bucket/x.png", task_id=tid)
    with pytest.raises(ImageFetchError):
        f.fetch("s3://bucket/x.png")  # no task id


# ------------------------------------------------------------------------------------- local files
@pytest.fixture()
def root(tmp_path):
    r = tmp_path / "root"
    (r / "imgs").mkdir(parents=True)
    (r / "imgs" / "a.png").write_bytes(PNG)
    (tmp_path / "secret.txt").write_text("top secret")
    os.symlink(tmp_path / "secret.txt", r / "imgs" / "link.png")
    os.symlink(r / "imgs" / "a.png", r / "imgs" / "inner-link.png")
    return r


@pytest.mark.parametrize("d", ["../secret.txt", "imgs/../../secret.txt", "%2e%2e/secret.txt", "imgs%2F..%2F..%2Fsecret.txt",
                               "imgs/link.png", "imgs/a.png%00.txt", "..\\secret.txt"])
def test_path_traversal_refused(root, d, ls):
    f = fetcher(document_root=str(root), upload_dir=str(root), label_studio_url=ls.url)
    with pytest.raises(ForbiddenImageSource):
        f.fetch(f"/data/local-files/?d={d}")
    with pytest.raises(ForbiddenImageSource):
        f.fetch(f"/data/upload/{d}")
    assert ls.requests == []


def test_local_files_inside_the_root(root):
    f = fetcher(document_root=str(root))
    assert f.fetch("/data/local-files/?d=imgs/a.png") == PNG
    assert f.fetch("/data/local-files/?d=imgs%2Fa.png") == PNG
    assert f.fetch("/data/local-files/?d=imgs/inner-link.png") == PNG  # symlink staying inside
    assert f.fetch("/data/local-files/?d=/imgs/a.png") == PNG  # leading slash: still under the root
    with pytest.raises(ImageFetchError) as e:
        f.fetch("/data/local-files/?d=imgs/none.png")
    assert e.value.status == 404
    assert safe_join(str(root), "imgs/a.png") == (root / "imgs" / "a.png").resolve()


def test_without_document_root_local_files_come_from_label_studio(ls):
    ls.routes["/data/local-files/"] = (200, {}, PNG)
    f = fetcher(label_studio_url=ls.url, api_key=TOKEN)
    assert f.fetch("/data/local-files/?d=imgs/a.png") == PNG
    assert ls.requests[0][1] == "/data/local-files/?d=imgs/a.png"
    assert ls.requests[0][2]["Authorization"] == f"Token {TOKEN}"
    with pytest.raises(ImageFetchError, match="LABEL_STUDIO_URL"):
        fetcher().fetch("/data/upload/1/a.png")


# ------------------------------------------------------------------------------------- limits
def test_size_limits(root, ls):
    big = b"\x89PNG" + b"0" * 5000
    ls.routes["/data/upload/1/big.png"] = (200, {}, big)
    ls.routes["/data/upload/1/chunked.png"] = (200, {"chunked": True}, big)
    f = fetcher(label_studio_url=ls.url, document_root=str(root), max_image_bytes=4000)
    for ref in ("/data/upload/1/big.png", "/data/upload/1/chunked.png"):
        with pytest.raises(ImageFetchError) as e:
            f.fetch(ref)
        assert e.value.status == 413
    (root / "big.png").write_bytes(big)
    with pytest.raises(ImageFetchError) as e:
        f.fetch("/data/local-files/?d=big.png")
    assert e.value.status == 413


def test_pixel_limit_and_body_limit_through_the_app(client_for, docroot):
    Image.new("RGB", (300, 300)).save(docroot / "wide.png")
    client, _ = client_for(max_image_pixels=50_000)
    ctx = {"result": [keypoint(5, 5, 300, 300)]}
    r = client.post("/predict", json=predict_body([ls_task(image="/data/local-files/?d=wide.png")], config_xml(), ctx))
    assert r.status_code == 413 and "pixels" in r.get_json()["error"]


def test_data_urls(ls):
    f = fetcher(max_image_bytes=len(PNG) + 10)
    assert f.fetch("data:image/png;base64," + base64.b64encode(PNG).decode()) == PNG
    for bad in ("data:text/html;base64,PGI+", "data:image/png;base64,@@@", "data:image/png,raw"):
        with pytest.raises(ImageFetchError):
            f.fetch(bad)
    with pytest.raises(ImageFetchError) as e:
        fetcher(max_image_bytes=100).fetch("data:image/png;base64," + base64.b64encode(PNG).decode())
    assert e.value.status == 413


# ------------------------------------------------------------------------------------- auth
def test_personal_access_token_is_exchanged_and_refreshed(ls):
    calls = {"n": 0}

    def image(handler):
        calls["n"] += 1
        auth = handler.headers.get("Authorization")
        if calls["n"] == 1:
            return (401, {}, b"expired")  # first access token rejected: refreshed once
        return (200, {}, PNG) if auth and auth.startswith("Bearer acc-") else (403, {}, b"")

    n = {"i": 0}

    def refresh(handler):
        n["i"] += 1
        return (200, {"Content-Type": "application/json"}, json.dumps({"access": f"acc-{n['i']}"}).encode())

    ls.routes["/api/token/refresh/"] = refresh
    ls.routes["/data/upload/1/a.png"] = image
    f = fetcher(label_studio_url=ls.url, api_key=PAT)
    assert f.fetch("/data/upload/1/a.png") == PNG
    posts = [r for r in ls.requests if r[0] == "POST"]
    assert len(posts) == 2 and json.loads(posts[0][3]) == {"refresh": PAT}
    gets = [r for r in ls.requests if r[0] == "GET"]
    assert [g[2]["Authorization"] for g in gets] == ["Bearer acc-1", "Bearer acc-2"]


def test_rejected_credentials_give_a_clear_error(ls):
    ls.routes["/data/upload/1/a.png"] = (401, {}, b"")
    with pytest.raises(ImageFetchError, match="LABEL_STUDIO_API_KEY") as e:
        fetcher(label_studio_url=ls.url, api_key=TOKEN).fetch("/data/upload/1/a.png")
    assert e.value.status == 502


def test_backend_never_follows_setup_hostname(client_for, ls):
    """/setup's ``hostname``/``access_token`` (which anyone reaching the backend can send) are ignored."""
    client, backend = client_for(document_root=None)
    client.post("/setup", json={"project": "1.1", "schema": config_xml(), "hostname": ls.url, "access_token": "x"})
    ctx = {"result": [keypoint(5, 5, 480, 360)]}
    r = client.post("/predict", json=predict_body([ls_task(image="/data/upload/1/a.png")], config_xml(), ctx))
    assert r.status_code == 422 and "LABEL_STUDIO_URL" in r.get_json()["error"]
    assert ls.requests == []
