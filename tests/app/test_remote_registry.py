"""The app over a RemoteRegistry answers exactly as over the local registry.

The serving side is the real :class:`ModelService` (what each Ray replica runs); only the
transport between the two is a function call here, so the tests check what crosses it: results,
every core error with its status, message and Retry-After, statuses and readiness.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import echo_plugin
import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from waiting import wait_for

from modeldeploy.app import create_app
from modeldeploy.config import parse_config
from modeldeploy.errors import (
    ArtifactVerificationError,
    AttemptTimeoutError,
    InvalidInputError,
    ModelDeployError,
    ModelLoadError,
    ModelNotReadyError,
    ModelUnloadedError,
    OverloadedError,
    PredictionError,
    PluginContractError,
    PredictionTimeoutError,
    StoreError,
    StoreUnavailableError,
)
from modeldeploy.remote import ModelService, RemoteFailure, RemoteRegistry, ReplicaReport

ECHO = {"models": {"echo": {"batch": {"timeout": 0.5, "max_queue": 1}}}, "serve": ["echo"],
        "server": {"admin_token": "an-admin-token-of-16+"}}


class InProcessClient:
    """A ModelClient whose transport is a function call into a ModelService."""

    def __init__(self, service: ModelService) -> None:
        self.service = service

    def predict(self, texts: Sequence[str], timeout: float | None = None) -> list[Any]:
        reply = self.service.predict(list(texts), timeout)
        if isinstance(reply, RemoteFailure):
            raise reply.error()
        return reply

    def report(self) -> ReplicaReport:
        return self.service.report()

    def metric_texts(self) -> list[str]:
        return [self.service.metrics()]


class NoReplicaAnswers:
    """A ModelClient for a model whose replicas are all gone."""

    def predict(self, texts: Sequence[str], timeout: float | None = None) -> list[Any]:
        raise ModelNotReadyError("a replica of model 'echo' stopped while answering; retry shortly", retry_after=1)

    def report(self) -> ReplicaReport:
        raise ModelNotReadyError("no replica is running")

    def metric_texts(self) -> list[str]:
        return []


@pytest.fixture
def remote(echo: type) -> Iterator[tuple[FlaskClient, RemoteRegistry]]:
    config = parse_config(ECHO)
    service = ModelService(config, "echo")
    registry = RemoteRegistry(config, {"echo": InProcessClient(service)}, refresh_seconds=0.05)
    registry.start(background=False)
    yield create_app(registry=registry).test_client(), registry
    registry.close()
    service.close()


def answer(client: FlaskClient, data: Any) -> tuple[int, Any, str | None]:
    response = client.post("/predict", json={"model_name": "echo", "data": data})
    return response.status_code, response.json, response.headers.get("Retry-After")


@pytest.mark.parametrize("data", ["hi", ["one", "three"], "fail here", ["ok", "fail too"], [], "x" * 10, 7, [None]])
def test_answers_and_errors_are_those_of_the_local_engine(remote, app_for, data):
    local, _ = app_for(ECHO)
    assert answer(remote[0], data) == answer(local, data)


def test_a_timeout_is_the_same_504(remote, app_for):
    local, _ = app_for(ECHO)
    remote_answer, local_answer = answer(remote[0], "block"), answer(local, "block")
    echo_plugin.RELEASE.set()
    assert remote_answer[0] == 504
    assert remote_answer == local_answer


def test_overload_is_503_with_the_same_retry_after(remote):
    client, _ = remote
    answers = {}
    first = threading.Thread(target=lambda: answers.setdefault("first", answer(client, "block")))
    first.start()
    assert echo_plugin.BLOCKED.wait(30)
    queued = threading.Thread(target=lambda: answers.setdefault("queued", answer(client, "queued")))
    queued.start()
    wait_for(lambda: REGISTRY.get_sample_value("modeldeploy_queue_depth", {"model": "echo"}) == 1)
    status, body, retry_after = answer(client, "one too many")
    echo_plugin.RELEASE.set()
    first.join(30)
    queued.join(30)
    assert (status, retry_after) == (503, "1") and "overloaded" in body["error"]["message"]


def test_models_health_and_oip_show_the_replicas_report(remote):
    client, _ = remote
    described = client.get("/models").json["models"][0]
    assert described["status"]["state"] == "ready" and described["device"] == "cpu"
    assert client.get("/health/ready").status_code == 200
    assert client.get("/v2/models/echo/ready").status_code == 200
    assert client.get("/v2/models/echo").json["outputs"][0]["shape"] == [-1]


def test_operators_load_and_unload_are_refused_with_how_to_change_models(remote):
    client, _ = remote
    headers = {"Authorization": "Bearer an-admin-token-of-16+"}
    for action in ("load", "unload"):
        response = client.post(f"/v2/repository/models/echo/{action}", headers=headers)
        assert response.status_code == 501
        assert "serve --engine ray" in response.json["error"]


def test_a_lazy_model_is_loaded_by_its_first_request_where_it_runs(echo):
    """The front never loads a remote model: an idle (lazy) one's request must reach the replica,
    whose registry starts the load, or the model would wait for a first request forever."""
    config = parse_config({**ECHO, "models": {"echo": {"lazy": True}}})
    service = ModelService(config, "echo")
    registry = RemoteRegistry(config, {"echo": InProcessClient(service)}, refresh_seconds=0.05)
    registry.start(background=False)
    try:
        client = create_app(registry=registry).test_client()
        assert registry.status("echo").state == "idle"
        status, body, retry_after = answer(client, "hi")
        assert status == 503 and "lazy start" in body["error"]["message"] and retry_after
        wait_for(lambda: answer(client, "hi")[0] == 200, timeout=30)
        wait_for(lambda: registry.status("echo").state == "ready", timeout=5)  # the next status poll
    finally:
        registry.close()
        service.close()


def test_a_model_no_replica_answers_for_is_failed_and_not_ready(echo):
    config = parse_config(ECHO)
    registry = RemoteRegistry(config, {"echo": NoReplicaAnswers()}, refresh_seconds=0.05)
    registry.start(background=False)
    try:
        client = create_app(registry=registry).test_client()
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and ready.json["not_ready"]["echo"]["state"] == "failed"
        status = client.get("/models").json["models"][0]["status"]
        assert status["state"] == "failed" and "no replica is running" in status["reason"]
        assert answer(client, "hi")[0] == 503
    finally:
        registry.close()


def test_a_registry_needs_a_client_for_every_served_model(echo):
    with pytest.raises(ValueError, match="no client for served model"):
        RemoteRegistry(parse_config(ECHO), {})


@pytest.mark.parametrize("error, kind", [
    (OverloadedError("full", retry_after=3), OverloadedError),
    (ModelNotReadyError("loading", retry_after=9), ModelNotReadyError),
    (ModelUnloadedError("echo"), ModelNotReadyError),
    (PredictionTimeoutError("late"), PredictionTimeoutError),
    (InvalidInputError("too long"), InvalidInputError),
    (PredictionError("broke"), PredictionError),
    # an operator's failed load: the app tells these apart (503 store down, 504 past load_timeout, 400)
    (StoreUnavailableError("bucket down"), StoreUnavailableError),
    (ArtifactVerificationError("unsigned"), StoreError),
    (AttemptTimeoutError("too slow"), AttemptTimeoutError),
    (ModelLoadError("no such folder"), ModelLoadError),
    (PluginContractError("a plugin bug"), PredictionError),
])
def test_errors_cross_with_their_class_message_and_retry_after(error: ModelDeployError, kind: type) -> None:
    again = RemoteFailure.of(error).error()
    assert type(again) is kind and str(again) == str(error)
    assert getattr(again, "retry_after", None) == getattr(error, "retry_after", None)


class BusyReplicas(NoReplicaAnswers):
    """A ModelClient whose replicas answered once, then are too busy to report."""

    def __init__(self, service: ModelService) -> None:
        self.first = InProcessClient(service).report()
        self.busy = False

    def report(self) -> ReplicaReport:
        if self.busy:
            raise OverloadedError("model 'echo' is overloaded: every replica is busy")
        return self.first


def test_replicas_too_busy_to_report_keep_their_status(echo):
    config = parse_config(ECHO)
    service = ModelService(config, "echo")
    client = BusyReplicas(service)
    registry = RemoteRegistry(config, {"echo": client}, refresh_seconds=0.05)
    registry.start(background=False)
    try:
        client.busy = True
        registry.refresh_statuses()
        assert registry.status("echo").state == "ready"
    finally:
        registry.close()
        service.close()
