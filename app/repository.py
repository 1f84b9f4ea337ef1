"""The Open Inference Protocol's model-repository extension: see, load and unload models at run time.

``POST /v2/repository/index`` lists every installed model (plugins pip-installed since start-up
included) with its state; ``.../models/NAME/load`` loads a model, or a new version of a served
one (``{"parameters": {"source": "gs://bucket/models/NAME.dill"}}``), swapping it in without
dropping a request; ``.../unload`` stops serving it. All three change or reveal what the server
runs, so each requires the admin token (:mod:`.admin`). Shapes follow Triton's HTTP API, so
``tritonclient``'s ``load_model``, ``unload_model`` and ``get_model_repository_index`` work; its
``config`` parameter may carry the same keys as a JSON string.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request

from modeldeploy.errors import (
    AttemptTimeoutError,
    InvalidInputError,
    ModelDeployError,
    ModelNotReadyError,
    StoreUnavailableError,
    UnknownModelError,
    UnsupportedOperationError,
)
from modeldeploy.inputs import decode_json
from modeldeploy.registry import FAILED, IDLE, LOADING, READY, STUCK, UNLOADED, Registry

from .admin import require_admin
from .errors import HttpError, error_response
from .state import get_registry

blueprint = Blueprint("repository", __name__, url_prefix="/v2/repository")

VERSION = "1"
#: Our states in the protocol's vocabulary, with the reason shown when the state alone does not say.
_PROTOCOL_STATES = {READY: ("READY", ""), LOADING: ("LOADING", ""), IDLE: ("UNAVAILABLE", "loads on first use (lazy)"),
                    FAILED: ("UNAVAILABLE", ""), UNLOADED: ("UNAVAILABLE", "unloaded by an operator"),
                    STUCK: ("UNAVAILABLE", "")}
_LOAD_PARAMETERS = ("source", "sha256", "config")
_MAX_SOURCE_LENGTH = 4096
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@blueprint.before_request
def _admin_only() -> None:
    require_admin()


@blueprint.post("/index")
def index() -> Response:
    """Every installed model with its state; ``{"ready": true}`` keeps only those serving."""
    only_ready = _flag(_body(), "ready")
    registry = get_registry()
    rows = [_index_row(registry, name) for name in sorted(registry.refresh_catalog().models)]
    return jsonify([row for row in rows if row["state"] == "READY" or not only_ready])


def _index_row(registry: Registry, name: str) -> dict[str, Any]:
    if name not in registry.names:
        return {"name": name, "version": VERSION, "state": "UNAVAILABLE", "reason": "installed, not loaded"}
    status = registry.status(name)
    state, reason = _PROTOCOL_STATES[status.state]
    return {"name": name, "version": VERSION, "state": state, "reason": status.reason or reason}


@blueprint.post("/models/<name>/load")
def load(name: str) -> Response | tuple[Response, int]:
    """Load ``name`` (a new source, if given) and answer once it serves, or say why it does not."""
    source, sha256 = _load_parameters(_body())
    registry = get_registry()
    try:
        status = registry.load_model(name, source, sha256)
    except (UnknownModelError, ModelNotReadyError, UnsupportedOperationError):
        raise
    except ModelDeployError as exc:
        return error_response(_load_failure(registry, name, exc))
    return jsonify(name=name, version=VERSION, state="READY", source=registry.model(name).source,
                   load_seconds=status.load_seconds)


def _load_failure(registry: Registry, name: str, exc: ModelDeployError) -> HttpError:
    """A failed load: 503 when the store was unreachable, 504 past load_timeout, else 400."""
    serving = name in registry.names and registry.status(name).state in (READY, STUCK)
    after = "the version serving before keeps serving" if serving else "the model does not serve"
    message = f"model {name!r} failed to load: {exc}; {after}"
    if isinstance(exc, StoreUnavailableError):
        return HttpError(503, message, headers={"Retry-After": "30"})
    if isinstance(exc, AttemptTimeoutError):
        return HttpError(504, message)
    return HttpError(400, message)


@blueprint.post("/models/<name>/unload")
def unload(name: str) -> Response:
    """Stop serving ``name`` once what it accepted is answered (``unload_dependents``: none exist)."""
    parameters = _parameters(_body())
    unknown = sorted(set(parameters) - {"unload_dependents"})
    if unknown:
        raise InvalidInputError(f"unknown unload parameter(s) {', '.join(map(repr, unknown))}; "
                                "accepted: 'unload_dependents'")
    get_registry().unload_model(name)
    return jsonify(name=name, version=VERSION, state="UNAVAILABLE")


# --------------------------------------------------------------------------- request bodies
def _body() -> dict[str, Any]:
    """The JSON object sent, or {} for an empty body (tritonclient sends one for the index)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    body = decode_json(raw)
    if not isinstance(body, dict):
        raise InvalidInputError(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInputError(f"{key!r} must be true or false")
    return value


def _parameters(body: dict[str, Any]) -> dict[str, Any]:
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidInputError("'parameters' must be an object")
    return parameters


def _load_parameters(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """``source`` and ``sha256``, given directly or inside Triton's ``config`` JSON string."""
    parameters = _parameters(body)
    unknown = sorted(set(parameters) - set(_LOAD_PARAMETERS))
    if unknown:
        raise InvalidInputError(f"unknown load parameter(s) {', '.join(map(repr, unknown))}; accepted: "
                                f"{', '.join(map(repr, _LOAD_PARAMETERS))} (this server loads sources, not files)")
    if "config" in parameters:
        parameters = {**parameters, **_config_parameter(parameters["config"])}
    source = _text(parameters.get("source"), "source")
    sha256 = _text(parameters.get("sha256"), "sha256")
    if sha256 is not None and source is None:
        raise InvalidInputError("'sha256' pins the bytes of a new 'source'; give the source too")
    if sha256 is not None and not _SHA256.fullmatch(sha256):
        raise InvalidInputError("'sha256' must be 64 hexadecimal characters (the artifact's SHA-256)")
    return source, sha256


def _config_parameter(config: Any) -> dict[str, Any]:
    if not isinstance(config, str):
        raise InvalidInputError("parameter 'config' must be a JSON object in a string, e.g. '{\"source\": \"...\"}'")
    try:
        document = json.loads(config)
    except ValueError as exc:
        raise InvalidInputError(f"parameter 'config' is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or set(document) - {"source", "sha256"}:
        raise InvalidInputError("parameter 'config' must be a JSON object with only 'source' and 'sha256'")
    return document


def _text(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_SOURCE_LENGTH or "\x00" in value:
        raise InvalidInputError(f"{key!r} must be a non-empty string of at most {_MAX_SOURCE_LENGTH} characters")
    return value.strip()
