"""Downloading an image over HTTP(S) from untrusted references, without SSRF or memory blow-ups.

:func:`safe_download` follows redirects by hand and checks every hop: a hop must go to a host
the caller trusts (``trusted(url)``: its own server, an allowlist), or, when
``open_redirect_https`` is on (the URL is a storage presign endpoint), to a *public* https address (checked after DNS resolution: loopback, private,
link-local and reserved addresses are refused). Credentials (``auth(url, retry)``) are sent only
where the caller says; a 401 is retried once with ``retry=True`` (refresh a short-lived token).
The body is capped at ``max_bytes`` while streaming. Errors carry the HTTP status a service
answers with: :class:`RefusedSource` (403), :class:`DownloadError` (404, 413, 422, 502).
:func:`read_capped_file` and :func:`data_url_bytes` do the same for local files (below a root
the caller trusts) and ``data:`` URLs.
"""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Callable, Optional, Tuple
from urllib.parse import urljoin, urlparse

from .fetch import ImageTooLargeError, UnsafeSourceError, decode_data_url, is_public_address, safe_join


class DownloadError(Exception):
    """A download that failed; ``status`` is the HTTP status a service answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class RefusedSource(DownloadError):
    """A URL (or redirect) the downloader refuses to follow (403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 403)


def read_capped_file(root: str, relative: str, max_bytes: int) -> bytes:
    """The bytes of ``root/relative`` (never outside ``root``: :class:`RefusedSource`); a missing
    file is a 404, one over ``max_bytes`` a 413 :class:`DownloadError`."""
    try:
        path: Path = safe_join(root, relative)
    except UnsafeSourceError as e:
        raise RefusedSource(str(e)) from None
    if not path.is_file():
        raise DownloadError(f"image not found: {path.name}", 404)
    size = path.stat().st_size
    if size > max_bytes:
        raise DownloadError(f"image {path.name} is {size} bytes, over the {max_bytes} limit", 413)
    return path.read_bytes()


def data_url_bytes(ref: str, max_bytes: int) -> bytes:
    """The bytes of a base64 ``data:image/...`` URL; :class:`DownloadError` 413 when over
    ``max_bytes``, 422 when it is not such a URL."""
    try:
        return decode_data_url(ref, max_bytes)
    except ImageTooLargeError as e:
        raise DownloadError(str(e), 413) from None
    except ValueError as e:
        raise DownloadError(str(e), 422) from None


def host_port(url: str) -> Tuple[str, int]:
    """(lower-case host, port) of ``url`` (default port by scheme)."""
    p = urlparse(url)
    return (p.hostname or "").lower(), p.port or (443 if p.scheme == "https" else 80)


def check_public(url: str) -> None:
    """:class:`RefusedSource` unless every address ``url``'s host resolves to is public."""
    host, port = host_port(url)
    if not host:
        raise RefusedSource("refused: URL without a host")
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise DownloadError(f"cannot resolve host {host!r}", 422) from None
    for info in infos:
        if not is_public_address(info[4][0]):
            raise RefusedSource(f"refused: {host} resolves to a non-public address")


def safe_download(url: str, *, session, trusted: Callable[[str], bool],
                  auth: Callable[[str, bool], Optional[str]] = lambda url, retry: None, max_bytes: int,
                  timeout: float = 30.0, open_redirect_https: bool = False, max_redirects: int = 3,
                  auth_hint: str = "check the credentials", user_agent: str = "ovsam") -> bytes:
    """The body of ``url`` under the rules of the module docstring.

    Args:
        session: a ``requests.Session`` (``trust_env=False`` recommended: no proxies from the env).
        trusted: hosts that may be contacted (and redirected to).
        auth: the ``Authorization`` header for a URL (``None``: send none); called with
            ``retry=True`` after a 401 to refresh it.
        open_redirect_https: allow redirects to any public https URL (a storage presign endpoint).
        auth_hint: how to fix rejected credentials (in the 502 message).
    """
    if not trusted(url):
        raise RefusedSource(f"refused: {host_port(url)[0] or url[:80]} is not a trusted host")
    retried = False
    for _ in range(max_redirects + 1):
        headers = {"User-Agent": user_agent}
        header = auth(url, retried) if trusted(url) else None
        if header:
            headers["Authorization"] = header
        try:
            r = session.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=False)
        except Exception as e:  # noqa: BLE001 - requests' many connection errors
            raise DownloadError(f"cannot download the image from {host_port(url)[0]}: {type(e).__name__}", 502) from None
        try:
            if r.status_code in (301, 302, 303, 307, 308):
                nxt = urljoin(url, r.headers.get("Location", ""))
                if not nxt.startswith(("http://", "https://")):
                    raise RefusedSource("refused: redirect to a non-http URL")
                if not trusted(nxt):
                    if not (open_redirect_https and nxt.startswith("https://")):
                        raise RefusedSource(f"refused: redirect to {host_port(nxt)[0]}")
                    check_public(nxt)
                url = nxt
                continue
            if r.status_code == 401 and header and not retried:
                retried = True
                continue
            if r.status_code in (401, 403) and header:
                raise DownloadError(f"{host_port(url)[0]} answered {r.status_code} for the image: {auth_hint}", 502)
            if r.status_code == 404:
                raise DownloadError("image not found (404)", 404)
            if r.status_code >= 400:
                raise DownloadError(f"the image download failed with HTTP {r.status_code}", 502)
            length = r.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise DownloadError(f"image is {length} bytes, over the {max_bytes} limit", 413)
            chunks, total = [], 0
            for chunk in r.iter_content(1 << 16):
                total += len(chunk)
                if total > max_bytes:
                    raise DownloadError(f"image larger than {max_bytes} bytes", 413)
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            r.close()
    raise DownloadError("too many redirects", 502)
