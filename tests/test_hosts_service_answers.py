"""ovsam_core.hosts.modelservice: request_body, credentials_match, error_answer (a route's request and errors)."""
from __future__ import annotations

import logging

import pytest

from ovsam_core import ServedModel, ServiceError, credentials_match, error_answer, request_body


def test_request_body_is_a_json_object_or_a_400():
    assert request_body(b'{"a": 1}') == {"a": 1}
    for bad in (b"", b"[1]", b"{nope"):
        with pytest.raises(ServiceError) as e:
            request_body(bad)
        assert e.value.status == 400 and "the request body" in str(e.value)


def test_credentials_match():
    assert credentials_match("u", "p", "u", "p")
    assert not credentials_match("u", "x", "u", "p") and not credentials_match(None, None, "u", "p")
    assert not credentials_match("ü", "p", "u", "p")


class HTTPError(Exception):  # as a web framework's (Werkzeug's HTTPException: code, description, name)
    def __init__(self, code, description=None, name="Error"):
        super().__init__(name)
        self.code, self.description, self.name = code, description, name


def test_error_answer(caplog):
    assert error_answer(ServiceError("no such model", 503)) == (503, "no such model")
    assert error_answer(HTTPError(404, "not here"), (HTTPError,)) == (404, "not here")
    assert error_answer(HTTPError(405, None, "Method Not Allowed"), (HTTPError,)) == (405, "Method Not Allowed")
    assert error_answer(HTTPError(413, "big"), (HTTPError,), too_large="over 5 bytes") == (413, "over 5 bytes")
    assert error_answer(HTTPError(413, "big"), (HTTPError,)) == (413, "big")
    caplog.set_level(logging.ERROR)
    try:
        raise KeyError("secret detail")
    except KeyError as e:
        status, msg = error_answer(e, (HTTPError,), log=logging.getLogger("t"))
    assert status == 500 and "KeyError" in msg and "secret" not in msg
    assert "secret detail" in caplog.text  # the traceback is logged


def test_timed_counts_answered_requests():
    model = ServedModel("m", lambda: object())
    with model.timed("predict"):
        pass
    with pytest.raises(ServiceError):
        with model.timed("predict"):
            raise ServiceError("refused")
    counters = model.metrics.report()["counters"]
    assert counters["predict_requests"] == 1 and counters["predict_seconds"] >= 0
