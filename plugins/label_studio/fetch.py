"""Fetching task images safely.

Accepted image references (the task's ``data[<key>]``):

* ``/data/upload/<project>/<file>`` (uploads) and ``/data/local-files/?d=<path>`` (local
  storage): read from ``upload_dir`` / ``document_root`` when configured (never outside them:
  ``..``, absolute paths and symlinks that leave the root are refused), else downloaded from
  ``LABEL_STUDIO_URL`` with its API key;
* ``s3://``, ``gs://``, ``azure-blob://`` ...: resolved by Label Studio
  (``/tasks/<id>/presign/?fileuri=...``), which answers with the bytes or a redirect to a
  presigned URL;
* ``http(s)://`` URLs: only on Label Studio's host or a host of ``allowed_hosts``;
* ``data:image/...;base64,...``.

SSRF: every request (and every redirect hop, followed by hand) must go to Label Studio's host
or an allowed host; the one exception is the redirect Label Studio's presign endpoint answers
with, which may go to any *public* https address (cloud storage). Addresses are checked after
DNS resolution: loopback, private, link-local and reserved addresses are refused unless the host
is Label Studio's or allowlisted. Sizes are capped (``max_image_bytes``) while streaming.

Auth: a legacy token is sent as ``Authorization: Token <key>``; a personal access token (a JWT
refresh token) is exchanged at ``/api/token/refresh`` for a short-lived access token sent as
``Bearer`` (renewed on 401). Credentials are only ever sent to Label Studio's host.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Optional, Tuple
from urllib.parse import parse_qs, quote, urlparse

from ovsam_core import DownloadError, RefusedSource, data_url_bytes, host_port, read_capped_file, safe_download

log = logging.getLogger("ovsam.label_studio")

CLOUD_SCHEMES = ("s3", "gs", "azure-blob", "azure-spi", "gcs")


#: an image that cannot be fetched; ``status`` is the HTTP status to answer with
ImageFetchError = DownloadError


class ForbiddenImageSource(RefusedSource):
    """A reference the backend refuses to follow (SSRF or path traversal, 403); logged as a warning."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        log.warning("image source %s", message)


def is_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


class ImageFetcher:
    """Resolves and downloads task images under the rules of the module docstring."""

    def __init__(self, settings, session=None) -> None:
        self.s = settings
        self._session = session
        self._access: Optional[Tuple[str, float]] = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public
    def fetch(self, ref: str, task_id: Optional[int] = None) -> bytes:
        """The bytes of ``ref`` (an image reference, or a Label Studio API path such as ``/api/...``)."""
        if not isinstance(ref, str) or not ref.strip():
            raise ImageFetchError("the task has no image reference (empty value)", 422)
        try:
            return self._fetch(ref.strip(), task_id)
        except RefusedSource as e:  # the core's refusals (SSRF, path traversal), logged
            if isinstance(e, ForbiddenImageSource):
                raise
            raise ForbiddenImageSource(str(e)) from None

    # ------------------------------------------------------------------ routing
    def _fetch(self, ref: str, task_id: Optional[int]) -> bytes:
        if ref.startswith("data:"):
            return data_url_bytes(ref, self.s.max_image_bytes)
        scheme = ref.split(":", 1)[0].lower() if "://" in ref else ""
        if scheme in CLOUD_SCHEMES:
            if task_id is None:
                raise ImageFetchError("a cloud-storage image needs the task id to be resolved by Label Studio")
            return self._from_label_studio(f"/tasks/{int(task_id)}/presign/?fileuri={quote(ref, safe='')}",
                                           presign=True)
        if scheme in ("http", "https"):
            return self._http(ref)
        if scheme:
            raise ForbiddenImageSource(f"refused: unsupported URL scheme {scheme!r}")
        path = ref if ref.startswith("/") else "/" + ref
        if path.startswith("/upload/"):
            path = "/data" + path
        parsed = urlparse(path)
        if parsed.path.rstrip("/") == "/data/local-files":
            d = (parse_qs(parsed.query).get("d") or [""])[0]
            if not d:
                raise ImageFetchError("local-files URL without ?d=<path>", 422)
            if self.s.document_root:
                return read_capped_file(self.s.document_root, d, self.s.max_image_bytes)
            return self._from_label_studio(path)
        if parsed.path.startswith("/data/upload/"):
            if self.s.upload_dir:
                return read_capped_file(self.s.upload_dir, parsed.path[len("/data/upload/"):], self.s.max_image_bytes)
            return self._from_label_studio(path)
        if parsed.path.startswith(("/data/", "/storage-data/", "/tasks/", "/api/")):
            return self._from_label_studio(path)
        raise ForbiddenImageSource(f"refused: {ref[:200]!r} is neither a Label Studio URL nor an allowed URL")

    # ------------------------------------------------------------------ http
    @property
    def session(self):
        if self._session is None:
            import requests

            self._session = requests.Session()
            self._session.trust_env = False  # no proxies from the environment: we check hosts ourselves
        return self._session

    def _ls_base(self) -> str:
        if not self.s.label_studio_url:
            raise ImageFetchError("this image is served by Label Studio: set LABEL_STUDIO_URL (and "
                                  "LABEL_STUDIO_API_KEY) for the backend", 422)
        return self.s.label_studio_url.rstrip("/")

    def _is_ls(self, url: str) -> bool:
        return bool(self.s.label_studio_url) and host_port(url) == host_port(self.s.label_studio_url)

    def _trusted(self, url: str) -> bool:
        host, port = host_port(url)
        return self._is_ls(url) or host in self.s.allowed_hosts or f"{host}:{port}" in self.s.allowed_hosts

    def _from_label_studio(self, path: str, presign: bool = False) -> bytes:
        return self._http(self._ls_base() + path, presign=presign)

    def _auth_header(self, force_refresh: bool = False) -> Optional[str]:
        key = self.s.api_key
        if not key:
            return None
        if not is_jwt(key):
            return f"Token {key}"
        with self._lock:
            if self._access and not force_refresh and self._access[1] > time.time():
                return f"Bearer {self._access[0]}"
        r = self.session.post(self._ls_base() + "/api/token/refresh/", json={"refresh": key},
                              timeout=self.s.fetch_timeout, allow_redirects=False)
        if r.status_code != 200:
            raise ImageFetchError(f"Label Studio refused the personal access token ({r.status_code}); "
                                  "check LABEL_STUDIO_API_KEY", 502)
        access = r.json().get("access")
        with self._lock:
            self._access = (access, time.time() + 240)  # access tokens live ~5 min
        return f"Bearer {access}"

    def _http(self, url: str, presign: bool = False) -> bytes:
        """:func:`ovsam_core.hosts.safe_download`: Label Studio's host and allowed hosts only, credentials
        to Label Studio only, presigned cloud URLs to public https addresses."""
        def auth(u: str, retry: bool) -> Optional[str]:
            return self._auth_header(force_refresh=retry) if self._is_ls(u) else None

        return safe_download(url, session=self.session, trusted=self._trusted, auth=auth,
                             max_bytes=self.s.max_image_bytes, timeout=self.s.fetch_timeout,
                             open_redirect_https=presign, user_agent="ovsam-label-studio",
                             auth_hint="set LABEL_STUDIO_API_KEY to a valid legacy token or personal access token")
