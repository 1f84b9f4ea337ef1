"""/metrics, request ids and JSON access logs of the real server process."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import pytest
from live_server import LiveServer
from prometheus_client.parser import text_string_to_metric_families

MODELS = ("ner", "sentiment", "summarization")
INFER_ROUTE = "/v2/models/<name>/infer"
#: A fresh id: the app's own (32 hex digits), or on the ray engine the UUID that Serve's proxy gives a
#: request that came without one, before the app sees it.
GENERATED_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def metrics(server: LiveServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = server.request("GET", "/metrics")
    assert response.status == 200
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def infer_body(texts: list[str]) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}


def test_metrics_are_prometheus_text_with_every_layer(ecosystem_server: LiveServer) -> None:
    response = ecosystem_server.request("GET", "/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    names = {sample_name for sample_name, _ in metrics(ecosystem_server)}
    assert {"modeldeploy_requests_total", "modeldeploy_request_duration_seconds_bucket",
            "modeldeploy_model_load_seconds", "modeldeploy_model_ready", "modeldeploy_model_state"} <= names


@pytest.mark.parametrize("model", MODELS)
def test_model_load_metrics(ecosystem_server: LiveServer, model: str) -> None:
    samples = metrics(ecosystem_server)
    assert value(samples, "modeldeploy_model_ready", model=model) == 1
    assert value(samples, "modeldeploy_model_state", model=model, state="ready") == 1
    assert value(samples, "modeldeploy_model_state", model=model, state="loading") == 0
    assert value(samples, "modeldeploy_model_load_seconds", model=model) > 0


def test_request_batch_and_item_metrics_move_after_an_infer(ecosystem_server: LiveServer) -> None:
    before = metrics(ecosystem_server)
    texts = ["great film", "awful film", "fine film"]
    response = ecosystem_server.request("POST", "/v2/models/sentiment/infer", json=infer_body(texts))
    assert response.status == 200, response.text
    after = metrics(ecosystem_server)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("modeldeploy_requests_total", model="sentiment", route=INFER_ROUTE, status="200") == 1
    assert moved("modeldeploy_request_duration_seconds_count", model="sentiment", route=INFER_ROUTE) == 1
    assert moved("modeldeploy_items_total", model="sentiment", outcome="ok") == len(texts)
    assert moved("modeldeploy_batch_size_count", model="sentiment") >= 1
    assert moved("modeldeploy_batch_size_sum", model="sentiment") == len(texts)
    assert ("modeldeploy_queue_depth", frozenset({("model", "sentiment")})) in after


def test_predict_is_labelled_with_its_model(ecosystem_server: LiveServer) -> None:
    before = metrics(ecosystem_server)
    response = ecosystem_server.request("POST", "/predict", json={"model_name": "ner", "data": "Paris"})
    assert response.status == 200
    after = metrics(ecosystem_server)
    labels = {"model": "ner", "route": "/predict", "status": "200"}
    assert value(after, "modeldeploy_requests_total", **labels) - value(before, "modeldeploy_requests_total", **labels) == 1


def test_labels_stay_bounded_whatever_the_url(ecosystem_server: LiveServer) -> None:
    junk = f"junk{uuid.uuid4().hex}"
    before = metrics(ecosystem_server)
    assert ecosystem_server.request("GET", f"/v2/models/{junk}/ready").status == 404
    assert ecosystem_server.request("GET", f"/{junk}/anything").status == 404
    after = metrics(ecosystem_server)
    assert junk not in ecosystem_server.request("GET", "/metrics").text
    unknown_model = {"model": "", "route": "/v2/models/<name>/ready", "status": "404"}
    unmatched = {"model": "", "route": "unmatched", "status": "404"}
    for labels in (unknown_model, unmatched):
        assert value(after, "modeldeploy_requests_total", **labels) - value(before, "modeldeploy_requests_total", **labels) == 1


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/models/nope", "/predict", "/metrics"])
def test_a_sane_request_id_is_returned_unchanged(ecosystem_server: LiveServer, path: str) -> None:
    response = ecosystem_server.request("GET", path, headers={"X-Request-ID": "trace-7f3a.b:c@d+e=f/g_h"})
    assert response.headers["X-Request-ID"] == "trace-7f3a.b:c@d+e=f/g_h"


@pytest.mark.parametrize("sent", [None, "", "has spaces", "x" * 129, "quote\"inside", "semi;colon"])
def test_missing_or_unsafe_request_ids_are_replaced(ecosystem_server: LiveServer, sent: str | None) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    first = ecosystem_server.request("GET", "/v2/health/live", headers=headers).headers["X-Request-ID"]
    second = ecosystem_server.request("GET", "/v2/health/live", headers=headers).headers["X-Request-ID"]
    assert GENERATED_ID.fullmatch(first) and GENERATED_ID.fullmatch(second) and first != second


#: Ray streams a replica's output to the command's with the replica's name in front, in colour.
RAY_REPLICA_PREFIX = re.compile(r"^(\x1b\[\d+m)?\([^)]*\)(\x1b\[\d+m)?\s*")


def access_line(server: LiveServer, request_id: str, timeout: float = 30) -> dict[str, Any]:
    """The JSON access line the server wrote for ``request_id`` (it may lag the response: Ray
    streams its replicas' output in batches)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.output().splitlines():
            line = RAY_REPLICA_PREFIX.sub("", line)
            if line.startswith("{") and request_id in line:
                record = json.loads(line)
                if record.get("logger") == "modeldeploy.access" and record.get("request_id") == request_id:
                    return record
        time.sleep(0.05)
    raise AssertionError(f"no access line for {request_id}:\n{server.output()[-3000:]}")


def test_access_lines_are_json_with_model_status_latency_and_id(ecosystem_server: LiveServer) -> None:
    request_id = f"log-{uuid.uuid4().hex}"
    response = ecosystem_server.request("POST", "/predict", json={"model_name": "sentiment", "data": "nice"},
                                        headers={"X-Request-ID": request_id})
    assert response.status == 200
    record = access_line(ecosystem_server, request_id)
    assert record["level"] == "INFO" and record["time"].endswith("+00:00")
    assert (record["method"], record["path"], record["model"], record["status"]) == ("POST", "/predict", "sentiment", 200)
    assert isinstance(record["duration_ms"], float) and record["duration_ms"] >= 0
    assert request_id in record["message"]


def test_access_line_of_a_failed_request_has_no_model(ecosystem_server: LiveServer) -> None:
    request_id = f"log-{uuid.uuid4().hex}"
    assert ecosystem_server.request("POST", "/v2/models/nope/infer", json=infer_body(["x"]),
                                    headers={"X-Request-ID": request_id}).status == 404
    record = access_line(ecosystem_server, request_id)
    assert (record["status"], record["model"], record["path"]) == (404, None, "/v2/models/nope/infer")
