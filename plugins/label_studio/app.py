"""Flask 3 app factory implementing Label Studio's ML-backend HTTP protocol.

Endpoints (with their request/response shapes), errors and basic auth: ``plugins/label_studio/README.md``
(*Endpoints*, *Errors*, *Images and security*); every error is JSON ``{"error": message, "status": code}``,
never an HTML page or a traceback.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Optional

from ovsam_core import credentials_match, error_answer, request_body

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

    @app.before_request
    def _auth():
        if not s.basic_auth_user or request.path == "/health":
            return None
        a = request.authorization
        if a is not None and a.type == "basic" and credentials_match(a.username, a.password, s.basic_auth_user,
                                                                     s.basic_auth_pass):
            return None
        backend.metrics.add("auth_failures")
        return reply({"error": "authentication required", "status": 401}, 401,
                     {"WWW-Authenticate": 'Basic realm="ovsam"'})

    def validate(data: dict) -> dict:
        backend.setup({"schema": data.get("config") or data.get("label_config") or data.get("schema")})
        return {"status": "ok"}

    # (method, path, answer, status): the protocol's endpoints (README, *Endpoints*); POST answers take the body
    # (looked up on the backend per request: tests replace its methods)
    for method, path, answer, status in (
            ("GET", "/health", lambda: backend.status(), 200), ("GET", "/", lambda: backend.status(), 200),
            ("POST", "/setup", lambda p: backend.setup(p), 200),
            ("POST", "/predict", lambda p: backend.predict(p), 200),
            ("POST", "/webhook", lambda p: backend.webhook(p), 201),
            ("POST", "/train", lambda p: backend.train(p), 200),
            ("GET", "/versions", lambda: {"versions": [backend.model_version]}, 200),
            ("POST", "/validate", validate, 200), ("GET", "/metrics", lambda: backend.metrics_json(), 200)):
        def view(answer=answer, status=status, post=method == "POST") -> Response:
            return reply(answer(request_body(request.get_data(cache=False))) if post else answer(), status)

        app.add_url_rule(path, path, view, methods=[method])

    @app.errorhandler(Exception)  # HTTPExceptions (404, 405, 413 ...) too
    def _error(e: Exception):
        too_large = f"request body larger than {s.max_body_bytes} bytes (OVSAM_LS_MAX_BODY_BYTES)"
        status, msg = error_answer(e, (HTTPException,), too_large, log)
        backend.metrics.add(f"http_{status}")
        return reply({"error": msg, "status": status}, status)

    if s.warmup:
        backend.model.warmup()
    return app
