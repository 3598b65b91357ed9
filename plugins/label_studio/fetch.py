"""Fetching task images safely: which references are accepted and how each is read (local roots,
Label Studio with its token, presigned cloud URLs, allowed hosts, data URLs), the SSRF and path
rules and the token handling are in the README's *Images and security* section. Downloads go
through :class:`ovsam_core.HostDownloader`; files through :func:`ovsam_core.read_capped_file`.
"""
from __future__ import annotations

import logging
from typing import Optional
from urllib.parse import parse_qs, quote, urlparse

from ovsam_core import DownloadError, HostDownloader, RefusedSource, data_url_bytes, read_capped_file

log = logging.getLogger("ovsam.label_studio")

CLOUD_SCHEMES = ("s3", "gs", "azure-blob", "azure-spi", "gcs")

#: an image that cannot be fetched; ``status`` is the HTTP status to answer with
ImageFetchError = DownloadError
#: a reference the backend refuses to follow (SSRF or path traversal, 403); logged as a warning
ForbiddenImageSource = RefusedSource


class ImageFetcher(HostDownloader):
    """Resolves and downloads task images under the rules of the README's *Images and security*:
    Label Studio's own server with its token, allowed hosts without (:class:`ovsam_core.HostDownloader`)."""

    def __init__(self, settings, session=None) -> None:
        super().__init__(settings.label_studio_url, settings.api_key, settings.allowed_hosts,
                         max_bytes=settings.max_image_bytes, timeout=settings.fetch_timeout, host_name="Label Studio",
                         key_hint="check LABEL_STUDIO_API_KEY",
                         auth_hint="set LABEL_STUDIO_API_KEY to a valid legacy token or personal access token",
                         missing_url_hint="this image is served by Label Studio: set LABEL_STUDIO_URL (and "
                                          "LABEL_STUDIO_API_KEY) for the backend",
                         user_agent="ovsam-label-studio", session=session)
        self.s = settings

    def fetch(self, ref: str, task_id: Optional[int] = None) -> bytes:
        """The bytes of ``ref`` (an image reference, or a Label Studio API path such as ``/api/...``)."""
        if not isinstance(ref, str) or not ref.strip():
            raise ImageFetchError("the task has no image reference (empty value)", 422)
        try:
            return self._fetch(ref.strip(), task_id)
        except RefusedSource as e:  # SSRF, path traversal, unsupported references: logged
            log.warning("image source %s", e)
            raise

    def _fetch(self, ref: str, task_id: Optional[int]) -> bytes:
        if ref.startswith("data:"):
            return data_url_bytes(ref, self.s.max_image_bytes)
        scheme = ref.split(":", 1)[0].lower() if "://" in ref else ""
        if scheme in CLOUD_SCHEMES:
            if task_id is None:
                raise ImageFetchError("a cloud-storage image needs the task id to be resolved by Label Studio")
            return self.get_path(f"/tasks/{int(task_id)}/presign/?fileuri={quote(ref, safe='')}", presign=True)
        if scheme in ("http", "https"):
            return self.get(ref)
        if scheme:
            raise ForbiddenImageSource(f"refused: unsupported URL scheme {scheme!r}")
        path = ref if ref.startswith("/") else "/" + ref
        if path.startswith("/upload/"):
            path = "/data" + path
        parsed = urlparse(path)
        root, file = None, ""  # a folder readable here that holds the file, else Label Studio serves it
        if parsed.path.rstrip("/") == "/data/local-files":
            root, file = self.s.document_root, (parse_qs(parsed.query).get("d") or [""])[0]
            if not file:
                raise ImageFetchError("local-files URL without ?d=<path>", 422)
        elif parsed.path.startswith("/data/upload/"):
            root, file = self.s.upload_dir, parsed.path[len("/data/upload/"):]
        elif not parsed.path.startswith(("/data/", "/storage-data/", "/tasks/", "/api/")):
            raise ForbiddenImageSource(f"refused: {ref[:200]!r} is neither a Label Studio URL nor an allowed URL")
        return read_capped_file(root, file, self.s.max_image_bytes) if root else self.get_path(path)
