"""Every error status of the JSON API, produced by real registries and a steerable test model."""

from __future__ import annotations

import json
import logging
import threading

import echo_plugin
from markupsafe import escape
from prometheus_client import REGISTRY
from waiting import wait_for

ECHO = {"models": {"echo": {}}, "serve": ["echo"]}


def predict(client, data, name="echo"):
    return client.post("/predict", data=json.dumps({"model_name": name, "data": data}))


def test_body_over_the_limit_is_413(echo, app_for):
    client, _ = app_for({**ECHO, "server": {"max_body_bytes": 200}})
    response = predict(client, "x" * 300)
    assert response.status_code == 413
    assert response.json["error"]["status"] == 413
    assert predict(client, "x" * 100).status_code == 200


def test_more_items_than_allowed_is_413(echo, app_for):
    client, _ = app_for({**ECHO, "server": {"max_items": 3}})
    response = predict(client, ["a", "b", "c", "d"])
    assert response.status_code == 413
    assert "4 items; at most 3" in response.json["error"]["message"]
    assert predict(client, ["a", "b", "c"]).json["body"] == [{"length": 1}] * 3


def test_model_that_failed_to_load_is_503_with_reason_everywhere(app_for, tmp_path):
    missing = tmp_path / "no-such-model"
    client, _ = app_for({"models": {"sentiment": {"source": str(missing)}}, "serve": ["sentiment"],
                         "server": {"load_retry_seconds": 30, "load_retry_max_seconds": 30}})
    response = predict(client, "hi", name="sentiment")
    assert response.status_code == 503
    assert 20 <= int(response.headers["Retry-After"]) <= 36  # the next load attempt: 30 s within its jitter
    assert "failed to load" in response.json["error"]["message"]
    model = client.get("/models").json["models"][0]
    assert model["status"]["state"] == "failed"
    assert str(missing) in model["status"]["reason"]
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json["not_ready"]["sentiment"]["state"] == "failed"
    assert escape(model["status"]["reason"]) in client.get("/").get_data(as_text=True)


def test_lazy_model_is_503_while_it_loads_then_serves(echo, app_for):
    client, registry = app_for({"models": {"echo": {"lazy": True}}, "serve": ["echo"]}, start=False)
    assert client.get("/models").json["models"][0]["status"]["state"] == "idle"
    response = predict(client, "hi")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    wait_for(lambda: registry.status("echo").state == "ready")
    assert predict(client, "hi").json["body"] == {"length": 2}


def test_full_queue_is_503_overloaded(echo, app_for):
    client, _ = app_for({"models": {"echo": {"batch": {"max_queue": 1}}}, "serve": ["echo"]})
    answers = {}
    first = threading.Thread(target=lambda: answers.setdefault("first", predict(client, "block")))
    first.start()
    assert echo_plugin.BLOCKED.wait(30)  # the inference thread is busy
    second = threading.Thread(target=lambda: answers.setdefault("second", predict(client, "queued")))
    second.start()
    wait_for(lambda: REGISTRY.get_sample_value("modeldeploy_queue_depth", {"model": "echo"}) == 1)
    response = predict(client, "one too many")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "overloaded" in response.json["error"]["message"]
    echo_plugin.RELEASE.set()
    first.join(30)
    second.join(30)
    assert answers["first"].status_code == answers["second"].status_code == 200


def test_request_outlasting_its_timeout_is_504(echo, app_for):
    client, _ = app_for({"models": {"echo": {"batch": {"timeout": 0.2}}}, "serve": ["echo"]})
    response = predict(client, "block")
    assert response.status_code == 504
    assert response.json["error"]["status"] == 504


def test_model_failure_is_500_without_stack_trace(echo, app_for, caplog):
    client, _ = app_for(ECHO)
    with caplog.at_level(logging.ERROR):
        response = predict(client, ["fine", "fail here"])
    assert response.status_code == 500
    message = response.json["error"]["message"]
    assert "item 1" in message
    assert "Traceback" not in response.get_data(as_text=True)
    assert predict(client, "still fine").status_code == 200  # the server keeps serving


def test_unexpected_exception_is_generic_500_and_logged(echo, app_for, caplog):
    client, _ = app_for(ECHO)

    def explode():
        raise KeyError("secret internal detail")

    client.application.add_url_rule("/explode", "explode", explode)
    with caplog.at_level(logging.ERROR):
        response = client.get("/explode")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "secret" not in body and "Traceback" not in body
    assert response.json["error"]["message"] == "internal server error; the server log has the details"
    assert "secret internal detail" in caplog.text and "Traceback" in caplog.text


def test_homepage_escapes_model_text(echo, app_for):
    client, _ = app_for(ECHO)
    page = client.get("/").get_data(as_text=True)
    assert "<script>window.pwned" not in page
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in page
    assert "&lt;b&gt;Not bold&lt;/b&gt;" in page
