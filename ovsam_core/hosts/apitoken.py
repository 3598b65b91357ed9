"""A host's API key as its REST API takes it: a legacy token, or a JWT refresh token exchanged for
short-lived access tokens.

Label Studio (like other Django REST framework + SimpleJWT services) accepts a legacy token, sent
as ``Authorization: Token <key>``, or a personal access token: a JWT *refresh* token that the
caller exchanges (``POST {"refresh": key}`` to the host's refresh endpoint, answered with
``{"access": ...}``) for an access token sent as ``Bearer <access>``, valid for a few minutes.
:class:`ApiToken` gives the header to send, reuses the access token for ``lifetime`` seconds and
renews it when asked (after a 401). The exchange itself is the caller's (its HTTP session, its
host's URL, its error for a refused key): no HTTP library is imported here.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Tuple


def is_jwt(token: str) -> bool:
    """Whether ``token`` looks like a JWT (three dot-separated parts, a base64 JSON header first)."""
    return token.count(".") == 2 and token.startswith("eyJ")


class ApiToken:
    """The ``Authorization`` header for ``key``.

    Args:
        key: a legacy token or a JWT refresh token (:func:`is_jwt`); empty or None: no header.
        exchange: ``exchange(refresh_token) -> access_token`` (raises when the host refuses it).
        lifetime: seconds an access token is reused before it is exchanged again.
    """

    def __init__(self, key: Optional[str], exchange: Callable[[str], str], lifetime: float = 240.0) -> None:
        self.key = key
        self._exchange = exchange
        self.lifetime = lifetime
        self._access: Optional[Tuple[str, float]] = None  # (token, valid until)
        self._lock = threading.Lock()

    def header(self, renew: bool = False) -> Optional[str]:
        """``Token <key>``, ``Bearer <access>`` (exchanged when there is none, it is old or ``renew``), or None."""
        if not self.key:
            return None
        if not is_jwt(self.key):
            return f"Token {self.key}"
        with self._lock:
            if self._access and not renew and self._access[1] > time.time():
                return f"Bearer {self._access[0]}"
        access = self._exchange(self.key)
        with self._lock:
            self._access = (access, time.time() + self.lifetime)
        return f"Bearer {access}"
