"""OIP error answers in-process: not-ready models (503), transport refusals, routing errors.

All under /v2 use the protocol's body, {"error": "message"}, while the JSON API keeps its own.
"""

from __future__ import annotations

import gzip
import json

import pytest
from flask import Flask
from flask.testing import FlaskClient

from modeldeploy.app import create_app
from modeldeploy.config import parse_config
from modeldeploy.registry import Registry

INFER = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]}


@pytest.fixture
def failed_app(tmp_path) -> Flask:
    """A server whose only model failed to load (its source folder does not exist)."""
    registry = Registry(parse_config({"models": {"sentiment": {"source": str(tmp_path / "missing")}}, "serve": ["sentiment"],
                                      "server": {"max_body_bytes": 2048, "load_retry_seconds": 30,
                                                 "load_retry_max_seconds": 30}}))
    registry.start(background=False)
    assert registry.status("sentiment").state == "failed"
    return create_app(registry=registry)


@pytest.fixture
def client(failed_app: Flask) -> FlaskClient:
    return failed_app.test_client()


def test_server_readiness_is_503_while_a_model_is_not_ready(client: FlaskClient) -> None:
    response = client.get("/v2/health/ready")
    assert response.status_code == 503
    assert response.get_json() == {"ready": False, "error": "models not ready: sentiment: failed"}
    assert client.get("/v2/health/live").status_code == 200


@pytest.mark.parametrize("path", ["/v2/models/sentiment/ready", "/v2/models/sentiment/versions/1/ready"])
def test_model_readiness_says_why_not(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 503 and 20 <= int(response.headers["Retry-After"]) <= 36  # the next attempt
    body = response.get_json()
    assert body["ready"] is False and "failed to load" in body["error"]


def test_metadata_is_available_even_when_the_model_is_not(client: FlaskClient) -> None:
    response = client.get("/v2/models/sentiment")
    assert response.status_code == 200 and response.get_json()["platform"] == "modeldeploy/text-classification"


def test_infer_on_a_failed_model_is_503_with_the_protocol_body(client: FlaskClient) -> None:
    response = client.post("/v2/models/sentiment/infer", data=json.dumps(INFER))
    assert response.status_code == 503
    assert set(response.get_json()) == {"error"} and "failed to load" in response.get_json()["error"]


def test_compressed_bodies_are_refused_clearly(client: FlaskClient) -> None:
    response = client.post("/v2/models/sentiment/infer", data=gzip.compress(json.dumps(INFER).encode()),
                           headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert response.get_json() == {"error": "Content-Encoding 'gzip' is not supported; send the body uncompressed"}


def test_a_body_over_the_limit_is_413(client: FlaskClient) -> None:
    response = client.post("/v2/models/sentiment/infer", data=b"x" * 4096)
    assert response.status_code == 413 and isinstance(response.get_json()["error"], str)


def test_routing_errors_under_v2_use_the_protocol_body(client: FlaskClient) -> None:
    missing = client.get("/v2/no/such/route")
    assert missing.status_code == 404 and isinstance(missing.get_json()["error"], str)
    wrong_method = client.get("/v2/models/sentiment/infer")
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]
    assert isinstance(wrong_method.get_json()["error"], str)


def test_the_json_api_keeps_its_own_error_body(client: FlaskClient) -> None:
    body = client.get("/no/such/route").get_json()
    assert body["error"]["status"] == 404 and "message" in body["error"]
