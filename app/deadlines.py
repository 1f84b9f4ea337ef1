"""A request's deadline as the client states it: the ``X-Request-Timeout`` header (seconds), on
every route that predicts, and the Open Inference Protocol's ``timeout`` parameter.

A client knows when an answer stops being useful to it (its own caller gave up, a page must render
in time); the server knows only each model's ``batch.timeout``. The deadline a request gets is the
earliest of these, so a client can lower the server's limit but never raise it: admission refuses
at once (503) what its queue cannot answer in time, and work whose deadline passed is dropped
unanswered (504).
"""

from __future__ import annotations

import math

from flask import request

from modeldeploy.cancellation import Cancellation
from modeldeploy.errors import InvalidInputError

TIMEOUT_HEADER = "X-Request-Timeout"
#: The header as a WSGI environ key, for the admission gate that runs before Flask.
TIMEOUT_ENVIRON_KEY = "HTTP_X_REQUEST_TIMEOUT"
#: WSGI environ key of the request's :class:`~modeldeploy.cancellation.Cancellation`, cancelled by
#: the HTTP server when the client hangs up (``modeldeploy serve`` provides it).
CANCELLATION = "modeldeploy.cancellation"
#: A day: longer is a mistake (a unit mix-up, most likely), not a deadline.
MAX_TIMEOUT_SECONDS = 86400.0


def parse_timeout_header(value: str | None) -> float | None:
    """Seconds from an ``X-Request-Timeout`` value, None when absent; a 400 saying what is wrong."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        raise InvalidInputError(f"header {TIMEOUT_HEADER} must be a number of seconds such as 2.5, got "
                                f"{value[:40]!r}") from None
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT_SECONDS):
        raise InvalidInputError(f"header {TIMEOUT_HEADER} must be more than 0 and at most "
                                f"{MAX_TIMEOUT_SECONDS:g} seconds, got {value[:40]!r}")
    return seconds


def request_timeout() -> float | None:
    """The current Flask request's ``X-Request-Timeout``, in seconds."""
    return parse_timeout_header(request.headers.get(TIMEOUT_HEADER))


def request_cancellation() -> Cancellation | None:
    """The current Flask request's cancellation, where the HTTP server provides one."""
    return request.environ.get(CANCELLATION)


def earliest(*timeouts: float | None) -> float | None:
    """The shortest of the timeouts given, None when none is."""
    given = [timeout for timeout in timeouts if timeout is not None]
    return min(given) if given else None
