"""The Open Inference Protocol (KServe V2) over REST, so Triton/KServe clients work unchanged.

Routes live under ``/v2``; every model has one version, ``"1"``, also reachable under
``/v2/models/<name>/versions/1/...``. Tensors are mapped in :mod:`modeldeploy.app.oip_codec`;
inference goes through the served model's ``predict_texts`` exactly like ``/predict``. Errors are
``{"error": "..."}`` with 400 (bad request), 404 (unknown model or version), 413 (too many texts
or bytes), 503 (not ready, overloaded) or 504 (timed out), statuses shared with the JSON API.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.blueprints import BlueprintSetupState

import modeldeploy
from modeldeploy.errors import InvalidInputError, ModelNotReadyError, UnknownModelError
from modeldeploy.registry import ServedModel

from . import oip_codec
from .deadlines import earliest, request_cancellation, request_timeout
from .json_api import check_item_count
from .errors import HttpError, use_error_body
from .observability import record_model
from .state import get_registry

MODEL_VERSION = "1"
SERVER_NAME = "modeldeploy"
#: Protocol extensions this server speaks (reported by ``GET /v2``).
EXTENSIONS = ["binary_tensor_data"]

blueprint = Blueprint("oip", __name__, url_prefix="/v2")


def _error_body(error: HttpError) -> dict[str, Any]:
    return {"error": error.message}


@blueprint.record_once
def _use_protocol_errors(state: BlueprintSetupState) -> None:
    """The protocol's error body is a bare message string, for routing errors under /v2 too."""
    use_error_body(state.app, blueprint.url_prefix, _error_body)


class UnknownVersionError(UnknownModelError):
    """A model version other than the single one each model has (404 like an unknown model)."""

    def __init__(self, name: str, version: str) -> None:
        super().__init__(name, [name])
        self.args = (f"model {name!r} has no version {version!r}; available versions: {MODEL_VERSION}",)


def _served_model(name: str, version: str | None) -> ServedModel:
    """The model a /v2 route names (looked up once): 404 for an unknown model, then version."""
    served = get_registry().model(name)
    if version is not None and version != MODEL_VERSION:
        raise UnknownVersionError(name, version)
    record_model(name)
    return served


@blueprint.get("")
def server_metadata() -> Response:
    """Name, version and extensions: ``model_repository`` once an admin token turns it on."""
    managed = bool(get_registry().config.server.admin_token)
    return jsonify(name=SERVER_NAME, version=modeldeploy.__version__,
                   extensions=EXTENSIONS + (["model_repository"] if managed else []))


@blueprint.get("/health/live")
def server_live() -> Response:
    return jsonify(live=True)


@blueprint.get("/health/ready")
def server_ready() -> tuple[Response, int]:
    waiting = get_registry().not_ready()
    if not waiting:
        return jsonify(ready=True), 200
    reasons = "; ".join(f"{name}: {status.state}" for name, status in sorted(waiting.items()))
    return jsonify(ready=False, error=f"models not ready: {reasons}"), 503


@blueprint.get("/models/<name>")
@blueprint.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None) -> Response:
    served = _served_model(name, version)
    wrapper_class = served.entry.wrapper_class
    return jsonify(
        name=name,
        versions=[MODEL_VERSION],
        platform=f"modeldeploy/{wrapper_class.task}",
        inputs=[oip_codec.tensor_metadata(oip_codec.INPUT_NAME)],
        outputs=[oip_codec.tensor_metadata(oip_codec.OUTPUT_NAME, wrapper_class.result_datatype,
                                           _item_shape(served))],
    )


def _item_shape(served: ServedModel) -> list[int]:
    """One result's shape in the output tensor; a vector's length is known once the model loaded."""
    wrapper = served.wrapper
    if wrapper is not None:
        return wrapper.result_shape()
    return [] if served.entry.wrapper_class.result_datatype == oip_codec.DATATYPE else [-1]


@blueprint.get("/models/<name>/ready")
@blueprint.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None) -> tuple[Response, int]:
    """200 when the model serves; 503 saying why not (a lazy model starts loading)."""
    served = _served_model(name, version)
    try:
        served.raise_unless_ready()
    except ModelNotReadyError as exc:
        response = jsonify(name=name, ready=False, error=str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response, 503
    return jsonify(name=name, ready=True), 200


@blueprint.post("/models/<name>/infer")
@blueprint.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None) -> Response:
    """Parse the tensors whatever the Content-Type (tritonclient sends none), predict, encode."""
    served = _served_model(name, version)
    encoding = request.headers.get("Content-Encoding", "identity").lower()
    if encoding != "identity":
        raise InvalidInputError(f"Content-Encoding {encoding!r} is not supported; send the body uncompressed")
    parsed = oip_codec.parse_infer_request(request.get_data(), request.headers.get(oip_codec.HEADER_LENGTH))
    check_item_count(len(parsed.texts), f"input {oip_codec.INPUT_NAME!r}")
    results = served.predict_texts(parsed.texts, earliest(request_timeout(), parsed.timeout),
                                   request_cancellation())
    body, headers = oip_codec.encode_infer_response(name, MODEL_VERSION, parsed, results,
                                                    served.entry.wrapper_class.result_datatype)
    return Response(body, status=200, headers=headers)
