"""Fetching task images safely: which references are accepted and how each is read (local roots,
Label Studio with its token, presigned cloud URLs, allowed hosts, data URLs), the SSRF and path
rules and the token handling are in the README's *Images and security* section. Downloads go
through :func:`ovsam_core.safe_download`; files through :func:`ovsam_core.read_capped_file`.
"""
from __future__ import annotations

import logging
from typing import Optional
from urllib.parse import parse_qs, quote, urlparse

from ovsam_core import ApiToken, DownloadError, RefusedSource, data_url_bytes, host_port, read_capped_file, safe_download

log = logging.getLogger("ovsam.label_studio")

CLOUD_SCHEMES = ("s3", "gs", "azure-blob", "azure-spi", "gcs")


#: an image that cannot be fetched; ``status`` is the HTTP status to answer with
ImageFetchError = DownloadError


class ForbiddenImageSource(RefusedSource):
    """A reference the backend refuses to follow (SSRF or path traversal, 403); logged as a warning."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        log.warning("image source %s", message)


class ImageFetcher:
    """Resolves and downloads task images under the rules of the README's *Images and security*."""

    def __init__(self, settings, session=None) -> None:
        self.s = settings
        self._session = session
        self.token = ApiToken(settings.api_key, self._exchange)

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

    def _exchange(self, refresh: str) -> str:
        """A personal access token (JWT refresh token) -> an access token, at Label Studio's ``/api/token/refresh/``."""
        r = self.session.post(self._ls_base() + "/api/token/refresh/", json={"refresh": refresh},
                              timeout=self.s.fetch_timeout, allow_redirects=False)
        if r.status_code != 200:
            raise ImageFetchError(f"Label Studio refused the personal access token ({r.status_code}); "
                                  "check LABEL_STUDIO_API_KEY", 502)
        return r.json().get("access")

    def _http(self, url: str, presign: bool = False) -> bytes:
        """:func:`ovsam_core.hosts.safe_download`: Label Studio's host and allowed hosts only, credentials
        to Label Studio only, presigned cloud URLs to public https addresses."""
        def auth(u: str, retry: bool) -> Optional[str]:
            return self.token.header(renew=retry) if self._is_ls(u) else None

        return safe_download(url, session=self.session, trusted=self._trusted, auth=auth,
                             max_bytes=self.s.max_image_bytes, timeout=self.s.fetch_timeout,
                             open_redirect_https=presign, user_agent="ovsam-label-studio",
                             auth_hint="set LABEL_STUDIO_API_KEY to a valid legacy token or personal access token")
