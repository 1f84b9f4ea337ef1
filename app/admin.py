"""The admin token that guards routes which change what the server runs.

Those routes are off unless ``server.admin_token`` is set (403 saying how to turn them on); when
it is, a request must carry ``Authorization: Bearer TOKEN`` (401 otherwise), compared in constant
time so response timing does not leak how much of a guess was right. Every other route stays open.
"""

from __future__ import annotations

import hmac
import logging

from flask import request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized

from .state import get_registry

log = logging.getLogger(__name__)

ENABLE_HELP = ("set server.admin_token in the server's config (for example admin_token: "
               "${MODELDEPLOY_ADMIN_TOKEN}, at least 16 characters) and send it as 'Authorization: Bearer TOKEN'")


def require_admin() -> None:
    """Raise 403 when admin routes are off, 401 when the request lacks the right token."""
    token = get_registry().config.server.admin_token
    if not token:
        raise Forbidden(f"model management is turned off on this server; to turn it on, {ENABLE_HELP}")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise _unauthorized("this route needs the admin token: send 'Authorization: Bearer TOKEN'")
    if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8")):
        log.warning("refused %s %s from %s: wrong admin token", request.method, request.path, request.remote_addr)
        raise _unauthorized("the admin token is wrong")


def _unauthorized(message: str) -> Unauthorized:
    return Unauthorized(message, www_authenticate=WWWAuthenticate("bearer", {"realm": "modeldeploy admin"}))
