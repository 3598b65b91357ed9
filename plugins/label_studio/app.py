"""Flask 3 app factory implementing Label Studio's ML-backend HTTP protocol.

Endpoints (with their request/response shapes), errors and basic auth: ``plugins/label_studio/README.md``
(*Endpoints*, *Errors*, *Images and security*); every error is JSON ``{"error": message, "status": code}``, never an HTML page or a traceback.
"""
from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Optional

from ovsam_core import ServiceError, internal_error, json_object

from .backend import Backend
from .settings import Settings, settings_from_env

log = logging.getLogger("ovsam.label_studio")


def create_app(settings: Optional[Settings] = None, backend: Optional[Backend] = None):
    """A Flask app serving ``backend`` (built from ``settings``, default: the environment)."""
    from flask import Flask, Response, request
    from werkzeug.exceptions import HTTPException

    if backend is None:
        backend = Backend(settings or settings_from_env())
    s = backend.s
    app = Flask("ovsam_label_studio")
    app.config["MAX_CONTENT_LENGTH"] = s.max_body_bytes
    app.extensions["ovsam_backend"] = backend

    def reply(data: Any, status: int = 200, headers: Optional[dict] = None) -> Response:
        return Response(json.dumps(data, allow_nan=False, default=str), status=status,
                        mimetype="application/json", headers=headers)

    def body() -> dict:
        try:
            return json_object(request.get_data(cache=False), "the request body")
        except ValueError as e:
            raise ServiceError(str(e), 400) from None

    @app.before_request
    def _auth():
        if not s.basic_auth_user or request.path == "/health":
            return None
        a = request.authorization
        if (a is not None and a.type == "basic"
                and hmac.compare_digest((a.username or "").encode(), s.basic_auth_user.encode())
                and hmac.compare_digest((a.password or "").encode(), s.basic_auth_pass.encode())):
            return None
        backend.metrics.add("auth_failures")
        return reply({"error": "authentication required", "status": 401}, 401,
                     {"WWW-Authenticate": 'Basic realm="ovsam"'})

    def validate() -> dict:
        data = body()
        backend.setup({"schema": data.get("config") or data.get("label_config") or data.get("schema")})
        return {"status": "ok"}

    # (method, path, answer, status): the protocol's endpoints (see the table above)
    for method, path, answer, status in (
            ("GET", "/health", backend.status, 200), ("GET", "/", backend.status, 200),
            ("POST", "/setup", lambda: backend.setup(body()), 200),
            ("POST", "/predict", lambda: backend.predict(body()), 200),
            ("POST", "/webhook", lambda: backend.webhook(body()), 201),
            ("POST", "/train", lambda: backend.train(body()), 200),
            ("GET", "/versions", lambda: {"versions": [backend.model_version]}, 200),
            ("POST", "/validate", validate, 200),
            ("GET", "/metrics", backend.metrics_json, 200)):
        app.add_url_rule(path, path, lambda answer=answer, status=status: reply(answer(), status), methods=[method])

    @app.errorhandler(Exception)  # HTTPExceptions (404, 405, 413 ...) too
    def _error(e: Exception):
        if isinstance(e, ServiceError):
            status, msg = e.status, str(e)
        elif isinstance(e, HTTPException):
            status, msg = e.code or 500, e.description or e.name
            if status == 413:
                msg = f"request body larger than {s.max_body_bytes} bytes (OVSAM_LS_MAX_BODY_BYTES)"
        else:
            log.exception("internal error")
            status, msg = 500, internal_error(e)
        backend.metrics.add(f"http_{status}")
        return reply({"error": msg, "status": status}, status)

    if s.warmup:
        backend.model.warmup()
    return app
