"""``/openapi.json`` (the OpenAPI 3 description of every route) and ``/api``, a page rendering it.

The description is written by hand in ``openapi.yaml`` next to this file, where it reads like
documentation; this module adds what every operation shares (the ``X-Request-ID`` request
header and response header), the package version, and the served models and item limit.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from importlib import resources
from typing import Any

import yaml
from flask import Blueprint, Response, jsonify, render_template

import modeldeploy

from .state import get_registry, max_items

_REQUEST_ID_PARAMETER = {"$ref": "#/components/parameters/RequestId"}
_REQUEST_ID_HEADER = {"$ref": "#/components/headers/RequestId"}
_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

blueprint = Blueprint("openapi", __name__)


@functools.cache
def _shared_document() -> dict[str, Any]:
    """The document every app shares (built once; never modified after)."""
    text = resources.files(__package__).joinpath("openapi.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    document["info"]["version"] = modeldeploy.__version__
    for path_item in document["paths"].values():
        for method in _HTTP_METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            # YAML aliases share response objects between operations: copy before adding headers.
            operation["responses"] = copy.deepcopy(operation["responses"])
            operation.setdefault("parameters", []).append(_REQUEST_ID_PARAMETER)
            for response in operation["responses"].values():
                if "$ref" not in response:
                    response.setdefault("headers", {})["X-Request-ID"] = _REQUEST_ID_HEADER
    for response in document["components"]["responses"].values():
        response.setdefault("headers", {})["X-Request-ID"] = _REQUEST_ID_HEADER
    return document


def openapi_document(model_names: Sequence[str] = (), max_items: int | None = None) -> dict[str, Any]:
    """The OpenAPI document of one server: its model names become the enum of every model
    parameter and ``max_items`` the longest list /predict takes, so clients (and generated
    tests) see this server's real limits."""
    document = copy.deepcopy(_shared_document())
    predict_request = document["components"]["schemas"]["PredictRequest"]["properties"]
    if model_names:
        names = list(model_names)
        document["components"]["parameters"]["ModelName"]["schema"]["enum"] = names
        predict_request["model_name"]["enum"] = names
    if max_items is not None:
        predict_request["data"]["oneOf"][1]["maxItems"] = max_items
    return document


@blueprint.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(openapi_document(get_registry().names, max_items()))


@blueprint.get("/api")
def api_page() -> str:
    return render_template("api.html")
