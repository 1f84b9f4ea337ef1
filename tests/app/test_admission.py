"""Admission before Flask, deadlines from the client, and a stuck model, on real registries.

The ``echo`` test model is steerable: ``block`` holds its inference thread until released,
``sleep:S`` takes S seconds (so the batcher learns what an item costs).
"""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import echo_plugin
import flask
import pytest
from prometheus_client import REGISTRY
from waiting import wait_for

from modeldeploy.app import admission
from modeldeploy.app.admission import MAX_HOLD_SECONDS, RefusalPacer
from modeldeploy.errors import OverloadedError
from modeldeploy.registry import READY, STUCK

ECHO = {"models": {"echo": {"batch": {"max_queue": 1}}}, "serve": ["echo"]}
#: The same request, but with the model name escaped: the gate cannot read it, Flask can.
ESCAPED_NAME_BODY = '{"model_name": "ech\\u006f", "data": "x"}'


def predict(client, data: Any, name: str = "echo", headers: dict[str, str] | None = None):
    return client.post("/predict", data=json.dumps({"model_name": name, "data": data}), headers=headers or {})


def flask_calls(client) -> list[str]:
    """Paths of the requests Flask itself handles (install before the app's first request)."""
    calls: list[str] = []
    client.application.before_request(lambda: calls.append(flask.request.path))
    return calls


def in_background(call) -> threading.Thread:
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def fill_queue(client, registry) -> list[threading.Thread]:
    """Hold the inference thread on ``block`` and queue one more text: the queue (max 1) is full."""
    threads = [in_background(lambda: predict(client, "block"))]
    assert echo_plugin.BLOCKED.wait(30)
    threads.append(in_background(lambda: predict(client, "queued")))
    wait_for(lambda: REGISTRY.get_sample_value("modeldeploy_queue_depth", {"model": "echo"}) == 1)
    return threads


def release(threads: list[threading.Thread]) -> None:
    echo_plugin.RELEASE.set()
    for thread in threads:
        thread.join(30)


def test_a_refusal_is_answered_before_flask_exactly_as_flask_answers_it(echo, app_for):
    client, registry = app_for(ECHO)
    calls = flask_calls(client)
    threads = fill_queue(client, registry)
    del calls[:]
    refused = predict(client, "one too many", headers={"X-Request-ID": "req-42"})
    assert calls == []  # the gate answered: no Flask request ran
    through_flask = client.post("/predict", data=ESCAPED_NAME_BODY)
    assert calls == ["/predict"]
    release(threads)
    for response in (refused, through_flask):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert response.headers["Content-Type"] == "application/json"
    assert refused.json == through_flask.json
    assert refused.json["error"]["status"] == 503 and "overloaded" in refused.json["error"]["message"]
    assert refused.headers["X-Request-ID"] == "req-42"
    assert len(through_flask.headers["X-Request-ID"]) == 32
    counted = REGISTRY.get_sample_value("modeldeploy_requests_total",
                                        {"model": "echo", "route": "/predict", "status": "503"})
    assert counted >= 2


def test_an_oip_refusal_has_the_protocol_error_body(echo, app_for):
    client, registry = app_for(ECHO)
    calls = flask_calls(client)
    threads = fill_queue(client, registry)
    del calls[:]
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
    for path in ("/v2/models/echo/infer", "/v2/models/echo/versions/1/infer"):
        response = client.post(path, data=json.dumps(body))
        assert response.status_code == 503
        assert set(response.json) == {"error"} and "overloaded" in response.json["error"]
    assert calls == []
    release(threads)


@pytest.mark.parametrize("body, status", [
    ('{"model_name": "echo", "model_name": "echo", "data": "x"}', 200),  # named twice: Flask decides
    ('{"model_name": "nope", "data": "x"}', 404),
    ('{"model_name": "echo", "data": 7}', 400),
    ('{"model_name": "echo", "data": "x"', 400),
])
def test_what_the_gate_cannot_judge_reaches_flask_with_its_body_intact(echo, app_for, body, status):
    client, _ = app_for(ECHO)
    calls = flask_calls(client)
    response = client.post("/predict", data=body)
    assert response.status_code == status
    assert calls == ["/predict"]
    if status == 200:
        assert response.json["body"] == {"length": 1}


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf", "86401"])
def test_a_bad_timeout_header_is_400_naming_the_header(echo, app_for, value):
    client, _ = app_for(ECHO)
    response = predict(client, "x", headers={"X-Request-Timeout": value})
    assert response.status_code == 400
    assert "X-Request-Timeout" in response.json["error"]["message"]


def test_the_timeout_header_lowers_the_models_deadline_but_never_raises_it(echo, app_for):
    client, registry = app_for({"models": {"echo": {"batch": {"timeout": 0.5}}}, "serve": ["echo"]})
    lowered = predict(client, "block", headers={"X-Request-Timeout": "0.2"})
    assert lowered.status_code == 504
    assert "within 0.2s" in lowered.json["error"]["message"]
    echo_plugin.RELEASE.set()
    raised = predict(client, "sleep:2", headers={"X-Request-Timeout": "30"})
    assert raised.status_code == 504
    assert "within 0.5s" in raised.json["error"]["message"]
    wait_for(lambda: registry.status("echo").state == STUCK)  # the 2 s batch outlives the 0.5 s timeout
    wait_for(lambda: registry.status("echo").state == READY)
    assert predict(client, "x", headers={"X-Request-Timeout": "30"}).json["body"] == {"length": 1}


def infer(client, text: str, parameters: dict[str, Any] | None = None):
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]}
    if parameters is not None:
        body["parameters"] = parameters
    return client.post("/v2/models/echo/infer", data=json.dumps(body))


def test_the_oip_timeout_parameter_is_a_deadline_in_microseconds(echo, app_for):
    client, _ = app_for(ECHO)
    response = infer(client, "block", {"timeout": 200_000})
    assert response.status_code == 504
    assert "within 0.2s" in response.json["error"]
    echo_plugin.RELEASE.set()
    assert infer(client, "x", {"timeout": 10_000_000}).status_code == 200


@pytest.mark.parametrize("value", [-5, 0, 1.5, "100", True])
def test_a_bad_oip_timeout_parameter_is_400(echo, app_for, value):
    client, _ = app_for(ECHO)
    response = infer(client, "x", {"timeout": value})
    assert response.status_code == 400
    assert "'timeout'" in response.json["error"]


def test_work_that_cannot_meet_its_deadline_is_refused_at_once(echo, app_for):
    client, registry = app_for({"models": {"echo": {"batch": {"max_queue": 16}}}, "serve": ["echo"]})
    assert predict(client, "sleep:0.4").status_code == 200  # the batcher learns: ~0.4 s an item
    threads = [in_background(lambda: predict(client, "block"))]
    assert echo_plugin.BLOCKED.wait(30)
    threads += [in_background(lambda: predict(client, "sleep:0.4")) for _ in range(4)]
    wait_for(lambda: REGISTRY.get_sample_value("modeldeploy_queue_depth", {"model": "echo"}) == 4)
    started = time.monotonic()
    refused = predict(client, "x", headers={"X-Request-Timeout": "1"})
    assert time.monotonic() - started < 0.9  # refused, not left to time out
    assert refused.status_code == 503
    message = refused.json["error"]["message"]
    assert "cannot answer within the request's deadline (1 s)" in message
    assert int(refused.headers["Retry-After"]) >= 1
    waited = in_background(lambda: threads.append(predict(client, "x", headers={"X-Request-Timeout": "30"})))
    wait_for(lambda: REGISTRY.get_sample_value("modeldeploy_queue_depth", {"model": "echo"}) == 5)
    release(threads[:5])
    waited.join(30)
    assert threads[5].status_code == 200


def test_admission_prices_queued_work_by_the_rounds_it_has_seen(echo, app_for):
    _, registry = app_for({"models": {"echo": {"batch": {"max_queue": 16}}}, "serve": ["echo"]})
    served = registry.model("echo")
    assert served.admission_refusal(0.01) is None  # an empty queue takes anything
    registry.predict("echo", "sleep:0.3")
    batcher = served.batcher
    weight = batcher._pricer.weight(batcher.wrapper.cost_model, len("sleep:0.3"))
    assert 0.2 < batcher.predicted_wait(1, weight) < 1.0  # a round like the one seen
    assert batcher.predicted_wait(0, 0) == 0.0


def test_a_stuck_model_is_not_ready_until_its_batch_returns_and_others_keep_serving(echo, app_for, tiny_models):
    client, registry = app_for({"models": {"echo": {"batch": {"timeout": 0.3}},
                                           "sentiment": {"source": str(tiny_models["sentiment"])}},
                                "serve": ["echo", "sentiment"]})
    hung = predict(client, "block")
    assert hung.status_code == 504  # its own request: on time
    wait_for(lambda: registry.status("echo").state == STUCK)
    assert "predict_batch may hang" in registry.status("echo").reason
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.json["models"]["echo"] == STUCK
    assert REGISTRY.get_sample_value("modeldeploy_model_ready", {"model": "echo"}) == 0
    refused = predict(client, "x")
    assert refused.status_code == 503 and "is stuck" in refused.json["error"]["message"]
    assert predict(client, "I loved it", name="sentiment").status_code == 200
    oip_ready = client.get("/v2/models/echo/ready")
    assert oip_ready.status_code == 503
    echo_plugin.RELEASE.set()
    wait_for(lambda: registry.status("echo").state == READY)
    assert client.get("/health/ready").status_code == 200
    assert REGISTRY.get_sample_value("modeldeploy_model_ready", {"model": "echo"}) == 1
    assert predict(client, "x").json["body"] == {"length": 1}


def test_the_batcher_refuses_without_the_texts_only_when_its_queue_is_full(echo, app_for):
    client, registry = app_for(ECHO)
    batcher = registry.model("echo").batcher
    assert batcher.refusal() is None
    threads = fill_queue(client, registry)
    refusal = batcher.refusal()
    assert isinstance(refusal, OverloadedError) and "max_queue 1" in str(refusal)
    release(threads)
    wait_for(lambda: batcher.refusal() is None)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_retries_that_did_not_wait_are_spaced_at_the_rate_after_a_burst():
    pacer = RefusalPacer(rate=10, burst_seconds=0.2, clock=FakeClock())
    delays = [pacer.delay("storm") for _ in range(8)]
    # the first refusal, then a burst of 0.2 s worth of retries, go at once; then one each 0.1 s
    assert delays == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3, 0.4, 0.5])
    crowded = RefusalPacer(rate=1, clock=FakeClock())
    assert max(crowded.delay("storm") for _ in range(20)) == MAX_HOLD_SECONDS
    assert RefusalPacer(rate=0).delay("storm") == 0.0  # 0: refusals are never held


def test_a_client_that_waited_is_told_at_once_while_retries_wait_their_turn():
    clock = FakeClock()
    pacer = RefusalPacer(rate=10, retry_gap=0.05, burst_seconds=0, clock=clock)
    storm = [pacer.delay("storm") for _ in range(30)]
    assert storm[-1] == pytest.approx(2.9)
    clock.now += 0.1
    assert pacer.delay("newcomer") == 0.0  # never refused before
    assert pacer.delay("storm") == pytest.approx(3.0)  # the newcomer's refusal took a retry's slot
    assert pacer.delay("newcomer") == pytest.approx(3.1)  # at once again: now it is a retry
    clock.now += 3.2  # that refusal was sent 3.1 s in; the newcomer waited 0.1 s more before its next
    assert pacer.delay("newcomer") == 0.0


def test_a_storm_of_new_connections_waits_behind_the_clients_we_know():
    clock = FakeClock()
    pacer = RefusalPacer(rate=10, retry_gap=0.05, burst_seconds=0, clock=clock)
    # a storm's connections, some of whose clients sent their first request a while after connecting
    flood = [pacer.delay(f"new-{i}", opened=clock.now - 0.01 * i) for i in range(20)]
    assert flood == pytest.approx([0.1 * i for i in range(20)])
    assert pacer.delay("probe", opened=clock.now - 60, answered=clock.now - 0.1) == 0.0  # answered, then waited
    clock.now += 0.1
    assert pacer.delay("unknown", opened=None) == 0.0  # a server that does not say counts as known
    assert pacer.delay("new-20", opened=clock.now) == pytest.approx(2.1)  # the known ones took its slots
    assert pacer.delay("new-19", opened=clock.now) == pytest.approx(2.2)  # its refusal is not out yet: a retry
    # open for a minute, never answered: new too (a storm's late first requests look the same)
    assert pacer.delay("pooled", opened=clock.now - 60) == pytest.approx(2.2)
    clock.now += 0.1
    assert pacer.delay("new-0", opened=clock.now) == 0.0  # told 0.2 s ago, it waited: known now


def test_a_client_that_sends_as_soon_as_it_is_served_waits_with_the_retries():
    clock = FakeClock()
    pacer = RefusalPacer(rate=10, retry_gap=0.05, burst_seconds=0, clock=clock)
    assert pacer.delay("served") == 0.0  # refused once, long before its 200 below
    clock.now += 10
    storm = [pacer.delay("storm") for _ in range(10)]
    assert storm[-1] == pytest.approx(0.9)
    clock.now += 0.1
    # a 200 came 1 ms ago: a closed-loop client's next request, behind the storm's retries
    assert pacer.delay("served", answered=clock.now - 0.001) == pytest.approx(0.9)
    # a client that waited 100 ms after its answer is told at once, ahead of both
    assert pacer.delay("thinker", answered=clock.now - 0.1) == 0.0
    assert pacer.delay("storm") == pytest.approx(1.1)
    # an answer the server reports older than the pacer's own refusal does not hide that refusal
    assert pacer.delay("storm", answered=clock.now - 60) == pytest.approx(1.2)


def test_the_gap_is_counted_from_when_the_refusal_is_sent_not_decided():
    clock = FakeClock()
    pacer = RefusalPacer(rate=10, retry_gap=0.05, burst_seconds=0, clock=clock)
    held = [pacer.delay(f"client-{i}") for i in range(10)]  # ten first refusals: the last is held 0.9 s
    assert held[-1] == pytest.approx(0.9)
    clock.now += 0.91  # client-9 retries as soon as its refusal arrives
    assert pacer.delay("client-9") > 0


def test_a_new_connection_on_the_port_of_a_closed_one_is_not_taken_for_it(echo, app_for):
    client, registry = app_for(ECHO)
    threads = fill_queue(client, registry)
    gate = admission.admission_gate(client.application)
    gate.pacer = RefusalPacer(rate=1, burst_seconds=0)

    def refused_after(opened: float) -> float:
        holds: list[float] = []
        environ = {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", admission.CONNECTION_OPENED: opened,
                   admission.HOLD_RESPONSE: lambda seconds, on_drop: holds.append(seconds)}
        answer = client.post("/predict", json={"model_name": "echo", "data": "x"}, environ_base=environ)
        assert answer.status_code == 503
        return holds[0] if holds else 0.0

    first = time.monotonic() - 60
    assert refused_after(first) == 0.0
    assert refused_after(first) == pytest.approx(1.0, abs=0.1)  # the same connection retrying at once
    assert refused_after(time.monotonic() - 60) == pytest.approx(1.0, abs=0.1)  # another new client: next slot
    release(threads)


def test_a_held_refusal_whose_client_left_gives_its_slot_back():
    clock = FakeClock()
    pacer = RefusalPacer(rate=10, burst_seconds=0, clock=clock)
    assert [pacer.delay(f"client-{i}") for i in range(5)] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    pacer.release("client-4")  # hung up while held: the next one takes its slot
    pacer.release("client-0")  # already told: nothing to give back
    assert pacer.delay("client-5") == pytest.approx(0.4)


def test_holds_too_short_to_matter_are_not_made():
    pacer = RefusalPacer(rate=80, burst_seconds=0, clock=FakeClock())
    assert [pacer.delay("storm") for _ in range(4)] == pytest.approx([0, 0, 0.025, 0.0375])  # 12.5 ms: at once


def test_the_pacer_forgets_connections_it_no_longer_needs(monkeypatch):
    monkeypatch.setattr(admission, "MAX_REMEMBERED_CONNECTIONS", 8)
    clock = FakeClock()
    pacer = RefusalPacer(rate=1000, clock=clock)
    for i in range(8):
        pacer.delay(f"old-{i}")
    clock.now += 1
    pacer.delay("recent")
    assert set(pacer._refused_at) == {"recent"}  # the others' refusals are past the gap
    for i in range(20):
        pacer.delay(f"storm-{i}")
    assert len(pacer._refused_at) <= 8 and "storm-19" in pacer._refused_at


def test_an_empty_queue_behind_a_busy_model_still_refuses_a_deadline_it_cannot_meet(echo, app_for):
    client, _ = app_for({"models": {"echo": {"batch": {"max_queue": 16}}}, "serve": ["echo"]})
    assert predict(client, "sleep:0.4").status_code == 200  # ~0.4 s an item
    assert predict(client, "x", headers={"X-Request-Timeout": "0.1"}).status_code == 200  # idle: taken
    busy = in_background(lambda: predict(client, "block"))
    assert echo_plugin.BLOCKED.wait(30)
    refused = predict(client, "x", headers={"X-Request-Timeout": "0.1"})
    assert refused.status_code == 503
    assert "cannot answer within the request's deadline (0.1 s)" in refused.json["error"]["message"]
    release([busy])


def test_what_the_server_lets_through_holds_its_place_until_it_reaches_the_queue(echo, app_for):
    """The HTTP server's judge runs before a thread has the request: what it lets through counts
    as queued, so a storm's first burst cannot all pass an empty queue, until the request reaches
    the gate on its thread, which judges it against the queue itself and reserves nothing."""
    client, _ = app_for({"models": {"echo": {"batch": {"max_queue": 2}}}, "serve": ["echo"]})
    gate = admission.admission_gate(client.application)

    def judged(judge):
        body = json.dumps({"model_name": "echo", "data": "x"}).encode()
        return judge({"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "CONTENT_LENGTH": str(len(body)),
                      "wsgi.input": io.BytesIO(body), "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000"})

    assert [judged(gate.refusal) for _ in range(5)] == [None] * 5
    assert [judged(gate.judge_before_dispatch) for _ in range(2)] == [None, None]
    refused = judged(gate.judge_before_dispatch)
    assert refused is not None and refused.status.startswith("503")
    assert "0 items queued, 2 on their way, max_queue 2" in json.loads(refused.body)["error"]["message"]
    assert client.post("/predict", json={"model_name": "echo", "data": "x"}).status_code == 200  # one arrived
    assert judged(gate.judge_before_dispatch) is None
    assert judged(gate.judge_before_dispatch) is not None
