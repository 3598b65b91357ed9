"""ovsam_core.hosts.apitoken: legacy tokens and JWT refresh tokens as an Authorization header."""
from __future__ import annotations

import pytest

from ovsam_core import ApiToken, is_jwt

PAT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.sig"


def test_is_jwt():
    assert is_jwt(PAT) and not is_jwt("0123abcd") and not is_jwt("eyJ.only-two") and not is_jwt("a.b.c")


def test_legacy_token_and_no_token_need_no_exchange():
    def exchange(_):
        raise AssertionError("no exchange for a legacy token")

    assert ApiToken("0123abcd", exchange).header() == "Token 0123abcd"
    assert ApiToken("", exchange).header() is None and ApiToken(None, exchange).header() is None


def test_refresh_token_is_exchanged_reused_and_renewed():
    calls = []

    def exchange(refresh):
        calls.append(refresh)
        return f"acc-{len(calls)}"

    t = ApiToken(PAT, exchange)
    assert t.header() == "Bearer acc-1" and t.header() == "Bearer acc-1"  # reused
    assert t.header(renew=True) == "Bearer acc-2"  # after a 401
    assert calls == [PAT, PAT]
    old = ApiToken(PAT, exchange, lifetime=0.0)
    assert old.header() == "Bearer acc-3" and old.header() == "Bearer acc-4"  # expired at once


def test_a_refused_exchange_raises_the_callers_error():
    def exchange(_):
        raise PermissionError("refused")

    with pytest.raises(PermissionError):
        ApiToken(PAT, exchange).header()
