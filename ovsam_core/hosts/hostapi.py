"""Downloading from a labelling host's own server (with its API key) and from an allowlist of other hosts.

A host's service (the Label Studio backend) reads task images from the host's server, which wants
the host's API key, and sometimes from other servers, which must never see it. :class:`HostDownloader`
is that client: :func:`~ovsam_core.hosts.safe_download.safe_download` (SSRF checks at every hop,
size cap) to the host's server and the allowed hosts only, the ``Authorization`` header of an
:class:`~ovsam_core.hosts.apitoken.ApiToken` (a legacy token, or a JWT refresh token exchanged at
the host's refresh endpoint and renewed after a 401) to the host's server only. ``requests`` is
imported when the first download runs.
"""
from __future__ import annotations

from typing import Iterable, Optional, Tuple

from .apitoken import ApiToken
from .safe_download import DownloadError, host_port, safe_download


def parse_hosts(v: str) -> Tuple[str, ...]:
    """``"a.example, B.example:8080"`` (commas or semicolons) -> lower-case hosts, for ``allowed_hosts``."""
    return tuple(h.strip().lower() for h in v.replace(";", ",").split(",") if h.strip())


class HostDownloader:
    """Downloads from ``base_url`` (with ``api_key``) and from ``allowed_hosts`` (without).

    Args:
        base_url: the host's server, e.g. ``http://127.0.0.1:8080`` (None: not configured; a
            download from it is a 422 :class:`DownloadError` saying ``missing_url_hint``).
        api_key: a legacy token or a JWT refresh token (:class:`ApiToken`); None: no credentials.
        allowed_hosts: other hosts (``host`` or ``host:port``, lower case: :func:`parse_hosts`) that
            may be downloaded from.
        max_bytes, timeout: per download (the body is capped while streaming).
        refresh_path: where a JWT refresh token is exchanged (``POST {"refresh": key}`` ->
            ``{"access": ...}``) on ``base_url``.
        host_name: the host, as messages name it (e.g. ``Label Studio``).
        key_hint, auth_hint: how to fix a key the refresh endpoint refuses / credentials a download
            is refused with (in the 502 messages).
        missing_url_hint: the message when ``base_url`` is needed but not configured.
        session: a ``requests.Session`` (default: a new one that ignores proxies from the environment,
            since hosts are checked here).
    """

    def __init__(self, base_url: Optional[str], api_key: Optional[str], allowed_hosts: Iterable[str] = (), *,
                 max_bytes: int, timeout: float = 30.0, refresh_path: str = "/api/token/refresh/",
                 host_name: str = "the host", key_hint: str = "check the API key",
                 auth_hint: str = "check the API key", missing_url_hint: str = "set the host's URL",
                 user_agent: str = "ovsam", session=None) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.allowed_hosts = frozenset(allowed_hosts)
        self.max_bytes, self.timeout, self.refresh_path = max_bytes, timeout, refresh_path
        self.host_name, self.key_hint, self.auth_hint = host_name, key_hint, auth_hint
        self.missing_url_hint, self.user_agent = missing_url_hint, user_agent
        self._session = session
        self.token = ApiToken(api_key, self._exchange)

    @property
    def session(self):
        """The ``requests.Session`` (created on first use, ``trust_env=False``)."""
        if self._session is None:
            import requests

            self._session = requests.Session()
            self._session.trust_env = False  # no proxies from the environment: hosts are checked here
        return self._session

    def base(self) -> str:
        """``base_url``, or a 422 :class:`DownloadError` when it is not configured."""
        if not self.base_url:
            raise DownloadError(self.missing_url_hint, 422)
        return self.base_url

    def is_host(self, url: str) -> bool:
        """Whether ``url`` is on the host's server (same host and port as ``base_url``)."""
        return bool(self.base_url) and host_port(url) == host_port(self.base_url)

    def trusted(self, url: str) -> bool:
        """The host's server or an allowed host."""
        host, port = host_port(url)
        return self.is_host(url) or host in self.allowed_hosts or f"{host}:{port}" in self.allowed_hosts

    def get(self, url: str, presign: bool = False) -> bytes:
        """The body of ``url`` (credentials to the host's server only); ``presign``: ``url`` is a
        storage presign endpoint that may redirect to any public https address. A refused URL
        raises :class:`RefusedSource` (403), other failures :class:`DownloadError`."""
        def auth(u: str, retry: bool) -> Optional[str]:
            return self.token.header(renew=retry) if self.is_host(u) else None

        return safe_download(url, session=self.session, trusted=self.trusted, auth=auth, max_bytes=self.max_bytes,
                             timeout=self.timeout, open_redirect_https=presign, user_agent=self.user_agent,
                             auth_hint=self.auth_hint)

    def get_path(self, path: str, presign: bool = False) -> bytes:
        """:meth:`get` of ``path`` (e.g. ``/data/upload/1/a.png``) on the host's server."""
        return self.get(self.base() + path, presign=presign)

    def _exchange(self, refresh: str) -> str:
        """A JWT refresh token -> an access token, at ``refresh_path`` (502 when the host refuses it)."""
        r = self.session.post(self.base() + self.refresh_path, json={"refresh": refresh}, timeout=self.timeout,
                              allow_redirects=False)
        if r.status_code != 200:
            raise DownloadError(f"{self.host_name} refused the personal access token ({r.status_code}); "
                                f"{self.key_hint}", 502)
        return r.json().get("access")
