"""JSON errors: every failure becomes ``{"error": {"status": N, "message": "..."}}``.

:func:`describe_error` maps the core's error types to HTTP statuses once, so every blueprint
(this JSON API, the Open Inference Protocol) answers the same failure with the same status.
Unexpected exceptions are logged with their stack trace and answered with a generic 500.
A protocol with its own error body (the Open Inference Protocol under ``/v2``) registers it with
:func:`use_error_body` for its URL prefix, on the app being set up (kept in ``app.extensions``);
routing errors under that prefix get it too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from modeldeploy.errors import (
    InputTypeError,
    InvalidInputError,
    ModelNotReadyError,
    OverloadedError,
    PredictionError,
    PredictionTimeoutError,
    RequestCancelledError,
    UnknownModelError,
    UnsupportedOperationError,
)

log = logging.getLogger(__name__)

#: The status logged for a request whose client hung up before its answer (no one receives it).
CLIENT_CLOSED_REQUEST = 499
INTERNAL_ERROR_MESSAGE = "internal server error; the server log has the details"


@dataclass
class HttpError:
    """What to answer for an exception: status, message, extra body fields and headers."""

    status: int
    message: str
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def describe_error(exc: BaseException) -> HttpError:
    """The HTTP answer for ``exc``; logs what the client must not see."""
    if isinstance(exc, HTTPException):
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}  # e.g. Allow on 405
        return HttpError(exc.code or 500, _http_message(exc), headers=headers)
    if isinstance(exc, UnknownModelError):
        return HttpError(404, str(exc), {"available": exc.available})
    if isinstance(exc, (InvalidInputError, InputTypeError)):
        return HttpError(400, str(exc))
    if isinstance(exc, (ModelNotReadyError, OverloadedError)):
        return HttpError(503, str(exc), headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, PredictionTimeoutError):
        return HttpError(504, str(exc))
    if isinstance(exc, RequestCancelledError):  # nobody reads it; nginx's "client closed request"
        return HttpError(CLIENT_CLOSED_REQUEST, str(exc))
    if isinstance(exc, UnsupportedOperationError):
        return HttpError(501, str(exc))
    if isinstance(exc, PredictionError):
        log.error("prediction failed: %s", exc, exc_info=exc)
        return HttpError(500, str(exc))
    log.error("unhandled error while serving a request", exc_info=exc)
    return HttpError(500, INTERNAL_ERROR_MESSAGE)


def _http_message(exc: HTTPException) -> str:
    """werkzeug's own descriptions, except where they leave out what the client needs to know."""
    if isinstance(exc, RequestEntityTooLarge) and exc.description == RequestEntityTooLarge.description:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        return (f"request body is over {limit} bytes, this server's limit (server.max_body_bytes); "
                "send fewer or shorter texts per request")
    return exc.description or exc.name


def _default_body(error: HttpError) -> dict[str, Any]:
    return {"error": {"status": error.status, "message": error.message, **error.extra}}


ErrorBody = Callable[[HttpError], dict[str, Any]]
_BODIES_KEY = "modeldeploy.error_bodies"


def use_error_body(app: Flask, prefix: str, body: ErrorBody) -> None:
    """Answer ``app``'s errors for requests under ``prefix`` (e.g. ``/v2``) with ``body(error)``."""
    app.extensions.setdefault(_BODIES_KEY, {})[prefix] = body


def _body_for(path: str) -> ErrorBody:
    bodies: dict[str, ErrorBody] = current_app.extensions.get(_BODIES_KEY, {})
    for prefix, body in bodies.items():
        if path == prefix or path.startswith(prefix + "/"):
            return body
    return _default_body


def error_response(error: HttpError) -> Response:
    response = jsonify(_body_for(request.path)(error))
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def _handle(exc: Exception) -> Response:
    return error_response(describe_error(exc))


def register(app: Flask) -> None:
    """Answer every error of ``app`` (HTTP ones included) as JSON."""
    app.register_error_handler(Exception, _handle)
