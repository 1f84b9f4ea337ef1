"""The JSON API: ``/predict``, ``/models`` and the health checks.

``/predict`` reads its body as JSON whatever the Content-Type says, and accepts GET as well as
POST: the original app documented ``GET /predict`` with a JSON body, and clients still send it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from modeldeploy.inputs import decode_json, normalize_texts

from .deadlines import request_cancellation, request_timeout
from .models import describe_models
from .observability import record_model
from .state import get_registry, max_items

blueprint = Blueprint("api", __name__)

BODY_HELP = 'send a JSON object such as {"model_name": "sentiment", "data": "some text"}'


def read_json_body() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it (``decode_json``
    refuses invalid UTF-8, deep nesting, huge numbers and lone surrogates, naming where)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise BadRequest(f"request body is empty; {BODY_HELP}")
    body = decode_json(raw)
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {_json_type(body)}; {BODY_HELP}")
    return body


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def check_item_count(count: int, what: str) -> None:
    """413 when a request carries more texts than ``server.max_items`` (shared with /v2 infer)."""
    limit = max_items()
    if count > limit:
        raise RequestEntityTooLarge(f"{what} has {count} items; at most {limit} are accepted per request")


@blueprint.route("/predict", methods=["GET", "POST"])
def predict() -> Response:
    body = read_json_body()
    name = body.get("model_name")
    if "model_name" not in body:
        raise BadRequest(f"missing field 'model_name'; {BODY_HELP}")
    if not isinstance(name, str):
        raise BadRequest(f"field 'model_name' must be a string, got {_json_type(name)}")
    if "data" not in body:
        raise BadRequest(f"missing field 'data' (a string or a list of strings); {BODY_HELP}")
    served = get_registry().model(name)  # an unknown model is a 404 before anything else is checked
    record_model(name)
    texts, single = normalize_texts(body["data"])  # the one validation of this request's data
    check_item_count(len(texts), "'data'")
    results = served.predict_texts(texts, request_timeout(), request_cancellation())
    return jsonify({"model_name": name, "body": results[0] if single else results})


@blueprint.get("/models")
def models() -> Response:
    return jsonify({"models": describe_models(get_registry())})


@blueprint.get("/health/live")
def live() -> Response:
    return jsonify({"status": "alive"})


@blueprint.get("/health/ready")
def ready() -> Response:
    registry = get_registry()
    not_ready = {name: status.as_dict() for name, status in registry.not_ready().items()}
    body = {
        "status": "not ready" if not_ready else "ready",
        "models": {name: registry.status(name).state for name in registry.names},
        "not_ready": not_ready,
    }
    response = jsonify(body)
    response.status_code = 503 if not_ready else 200
    return response
