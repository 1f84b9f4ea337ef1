"""Overload against the real server process: refusals held back without threads, and a model
whose ``predict_batch`` hangs.

The ``wordcount`` test plugin has no weights; a text starting ``sleep:S`` keeps its batch busy
for S seconds. The tiny sentiment model is the neighbour that must keep serving.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from live_server import running_server
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_for

#: Refusals sent at once per second in the pacing test, and how many clients are refused at once.
RATE, REFUSED_CLIENTS = 4, 12


@pytest.fixture
def wordcount_env(extra_plugins_path):
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(extra_plugins_path), os.environ.get("PYTHONPATH")]))}


def predict(server, text: str, model: str = "wordcount", timeout: float = 60):
    return server.request("POST", "/predict", json={"model_name": model, "data": text}, timeout=timeout)


#: A model whose queue (max 1) fills at once, refusals paced at RATE a second, four HTTP threads.
PACED = {"serve": ["wordcount"], "models": {"wordcount": {"batch": {"max_queue": 1}}},
         "server": {"threads": 4, "max_refusals_per_second": RATE}}


def fill_the_queue(server, pool: ThreadPoolExecutor, seconds: float) -> tuple[Future, Future]:
    """Hold the model for ``seconds`` and queue one more text behind it: two of the four threads
    now wait on the model, and its next request is refused."""
    busy = pool.submit(predict, server, f"sleep:{seconds:g} holds the model")
    time.sleep(0.5)
    queued = pool.submit(predict, server, "fills the queue")
    time.sleep(0.5)
    return busy, queued


def test_refusals_beyond_the_rate_are_held_back_without_holding_threads(tmp_path, wordcount_env):
    with running_server(PACED, tmp_path, env=wordcount_env) as server, ThreadPoolExecutor(16) as pool:
        busy, queued = fill_the_queue(server, pool, 8)

        def refused_at() -> tuple[int, float]:
            answer = predict(server, "one too many")
            assert answer.headers["Retry-After"] == "1"
            return answer.status, time.monotonic()

        started = time.monotonic()
        refusals = [pool.submit(refused_at) for _ in range(REFUSED_CLIENTS)]
        time.sleep(0.5)
        live = server.request("GET", "/health/live", timeout=30)
        live_at = time.monotonic()
        answered = [refusal.result() for refusal in refusals]
        assert [status for status, _ in answered] == [503] * REFUSED_CLIENTS
        arrivals = sorted(at for _, at in answered)
        # paced at RATE a second: the last refusal is sent about (REFUSED_CLIENTS - 1) / RATE s in
        assert arrivals[-1] - started >= 0.6 * (REFUSED_CLIENTS - 1) / RATE
        # held refusals hold no thread: a health check on the two free threads is not behind them
        assert live.status == 200 and live_at < arrivals[-1]
        assert busy.result().status == 200 and queued.result().status == 200


def test_a_client_that_waited_is_refused_before_retries_that_did_not(tmp_path, wordcount_env):
    """Clients retrying on their keep-alive connections as soon as they are refused wait for the
    pace; a client refused for the first time is answered at once, ahead of retries sent before it."""
    with running_server(PACED, tmp_path, env=wordcount_env) as server, ThreadPoolExecutor(8) as pool:
        busy, queued = fill_the_queue(server, pool, 12)
        parts = urlsplit(server.url)
        body = json.dumps({"model_name": "wordcount", "data": "one too many"})

        def retry_at_once(times: int) -> list[tuple[int, float, float]]:
            """(status, sent, answered) of each request on one connection, each sent as the last is answered."""
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
            exchanges = []
            for _ in range(times):
                sent = time.monotonic()
                connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
                answer = connection.getresponse()
                answer.read()
                exchanges.append((answer.status, sent, time.monotonic()))
            connection.close()
            return exchanges

        storm = [pool.submit(retry_at_once, 4) for _ in range(REFUSED_CLIENTS // 3)]
        time.sleep(2)  # the retries now wait about REFUSED_CLIENTS / 3 / RATE s each
        (newcomer,) = retry_at_once(1)
        retries = [exchange for client in storm for exchange in client.result()]
        assert {status for status, _, _ in retries} == {503} and newcomer[0] == 503
        overtaken = [(sent, answered) for _, sent, answered in retries if sent < newcomer[1] and answered > newcomer[2]]
        assert overtaken, (newcomer, retries)
        assert busy.result().status == 200 and queued.result().status == 200


def test_a_hanging_model_costs_only_its_own_requests_and_shutdown_stays_clean(tmp_path, wordcount_env,
                                                                              tiny_models):
    config = {"serve": ["sentiment", "wordcount"],
              "models": {"wordcount": {"batch": {"timeout": 1}},
                         "sentiment": {"source": str(tiny_models["sentiment"])}},
              "server": {"shutdown_grace_seconds": 1}}
    with running_server(config, tmp_path, env=wordcount_env) as server:
        started = time.monotonic()
        hung = predict(server, "sleep:600 never returns")
        assert hung.status == 504 and time.monotonic() - started < 30
        wait_for(lambda: server.request("GET", "/health/ready").json()["models"]["wordcount"] == "stuck")
        ready = server.request("GET", "/health/ready")
        assert ready.status == 503
        assert "predict_batch may hang" in ready.json()["not_ready"]["wordcount"]["reason"]
        refused = predict(server, "three little words")
        assert refused.status == 503 and "is stuck" in refused.json()["error"]["message"]
        neighbour = predict(server, "I loved this film", model="sentiment")
        assert neighbour.status == 200 and neighbour.json()["body"]["label"] in {"POSITIVE", "NEGATIVE"}
        signalled = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        assert server.process.wait(30) == 0
        assert time.monotonic() - signalled < 15  # the hung batch does not hold the exit
        assert "Traceback" not in server.output()


def test_a_model_that_recovers_is_ready_again(tmp_path, wordcount_env):
    config = {"serve": ["wordcount"], "models": {"wordcount": {"batch": {"timeout": 1}}}}
    with running_server(config, tmp_path, env=wordcount_env) as server:
        assert predict(server, "sleep:4 slow but finite").status == 504
        wait_for(lambda: server.request("GET", "/health/ready").status == 503)
        wait_for(lambda: server.request("GET", "/health/ready").status == 200, timeout=30)
        assert predict(server, "three little words").json()["body"] == {"words": 3}


def metric(server, name: str, **labels: str) -> float:
    text = server.request("GET", "/metrics").text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and sample.labels == labels)


@pytest.mark.parametrize("engine", ["local", "process"])
def test_a_client_that_hangs_up_takes_its_request_out_of_the_queue(tmp_path, wordcount_env, engine):
    config = {"serve": ["wordcount"], "server": {"engine": engine}}
    with running_server(config, tmp_path, env=wordcount_env) as server, ThreadPoolExecutor(1) as pool:
        busy = pool.submit(predict, server, "sleep:6 holds the model")
        time.sleep(0.5)  # the model is now busy with it
        parts = urlsplit(server.url)
        body = json.dumps({"model_name": "wordcount", "data": "nobody will read this"}).encode()
        with socket.create_connection((parts.hostname, parts.port)) as client:
            client.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                           + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            wait_for(lambda: metric(server, "modeldeploy_queue_depth", model="wordcount") == 1)
        # the close is seen while the model is still busy: the queue empties long before the round ends
        wait_for(lambda: metric(server, "modeldeploy_queue_depth", model="wordcount") == 0, timeout=3)
        assert not busy.done()
        assert metric(server, "modeldeploy_items_total", model="wordcount", outcome="dropped") == 1
        assert busy.result().status == 200
        assert metric(server, "modeldeploy_items_total", model="wordcount", outcome="ok") == 1
        assert predict(server, "three little words").json()["body"] == {"words": 3}
        wait_for(lambda: "POST /predict 499 model=wordcount" in server.output())


def raw_exchange(server, payload: bytes, answers: int) -> tuple[list[bytes], bool]:
    """Send ``payload`` (one or more requests) on one connection and read ``answers`` responses:
    their heads and bodies, and whether the server closed the connection after the last."""
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(payload)
        received, responses = b"", []
        while len(responses) < answers:
            while b"\r\n\r\n" not in received:
                received += sock.recv(65536)
            head, received = received.split(b"\r\n\r\n", 1)
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(received) < length:
                received += sock.recv(65536)
            responses.append(head + b"\r\n\r\n" + received[:length])
            received = received[length:]
        sock.settimeout(1)
        try:
            closed = received == b"" and sock.recv(1) == b""
        except TimeoutError:
            closed = False
    return responses, closed


def post_bytes(version: str, body: dict[str, str], connection: str | None = None) -> bytes:
    data = json.dumps(body).encode()
    extra = f"Connection: {connection}\r\n" if connection else ""
    return (f"POST /predict HTTP/{version}\r\nHost: test\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


def test_a_refusal_is_answered_while_every_thread_is_busy(tmp_path, wordcount_env):
    """The gate judges a request on the loop's thread, before a pool thread takes it: with both
    threads waiting on the model, a request its full queue cannot take is refused at once, not
    after a thread frees up; pipelined requests behind a refusal are answered in order; the
    connection closes or stays open as HTTP/1.0 and 1.1 say."""
    config = {"serve": ["wordcount"], "models": {"wordcount": {"batch": {"max_queue": 1}}},
              "server": {"threads": 2, "max_refusals_per_second": 0}}
    with running_server(config, tmp_path, env=wordcount_env) as server, ThreadPoolExecutor(2) as pool:
        busy = pool.submit(predict, server, "sleep:10 holds the model")
        time.sleep(1)  # the model is now busy with it
        queued = pool.submit(predict, server, "fills the queue")
        time.sleep(1)
        # both threads now wait on the model (even /metrics would wait): only the loop's thread can answer
        refusal = {"model_name": "wordcount", "data": "one too many"}
        for version, connection, closes in [("1.1", None, False), ("1.1", "close", True),
                                            ("1.0", None, True), ("1.0", "keep-alive", False)]:
            (answer,), closed = raw_exchange(server, post_bytes(version, refusal, connection), 1)
            head, body = answer.split(b"\r\n\r\n")
            assert head.startswith(f"HTTP/{version} 503".encode()), head
            assert b"Retry-After: 1" in head and b"X-Request-Id: " in head  # waitress's capitals
            assert json.loads(body)["error"]["status"] == 503 and "overloaded" in json.loads(body)["error"]["message"]
            assert closed == closes, (version, connection)
            assert (b"Connection: Keep-Alive" in head) == (version == "1.0" and not closes)
            assert (b"Connection: close" in head) == closes
        # two refusals pipelined on one connection: both answered, in order, while the threads are busy
        answers, closed = raw_exchange(server, post_bytes("1.1", refusal) + post_bytes("1.1", refusal), 2)
        assert [answer.split(b" ", 2)[1] for answer in answers] == [b"503", b"503"] and not closed
        assert not busy.done() and not queued.done()
        assert busy.result().status == 200 and queued.result().status == 200
        # a request the gate lets through, pipelined behind a refusal, is served after it
        fill = pool.submit(predict, server, "sleep:3 holds the model again")
        time.sleep(1)
        pool.submit(predict, server, "fills the queue again")
        time.sleep(1)
        served = b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n"
        answers, _ = raw_exchange(server, post_bytes("1.1", refusal) + served, 2)
        assert [answer.split(b" ", 2)[1] for answer in answers] == [b"503", b"200"]
        assert fill.result().status == 200
        assert metric(server, "modeldeploy_requests_total", model="wordcount", route="/predict", status="503") == 7
        wait_for(lambda: server.output().count("POST /predict 503 model=wordcount") == 7)
