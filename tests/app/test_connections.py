"""Connections against the real server process: idle and half-sent connections, and the SIGTERM drain.

The model is the ``wordcount`` test plugin (no weights; a text starting ``sleep:S`` keeps its batch
busy for S seconds), so what is measured is the server, not a model.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from live_server import running_server

#: Idle connections held open while a new client must still be served promptly.
IDLE_CONNECTIONS = 1500


@pytest.fixture
def wordcount_env(extra_plugins_path):
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(extra_plugins_path), os.environ.get("PYTHONPATH")]))}


def config(**server):
    return {"serve": ["wordcount"], "server": server}


def address(server) -> tuple[str, int]:
    parts = urlsplit(server.url)
    return parts.hostname, parts.port


def connect(server, timeout: float = 10) -> socket.socket:
    return socket.create_connection(address(server), timeout=timeout)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket.timeout if it does not)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def predict_request(text: str, keep_alive: bool = True) -> bytes:
    body = json.dumps({"model_name": "wordcount", "data": text}).encode()
    connection = "keep-alive" if keep_alive else "close"
    return (f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nConnection: {connection}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@pytest.fixture
def many_files():
    """Let this process hold the idle sockets (the default soft limit may be 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = IDLE_CONNECTIONS + 500
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_connections_never_lock_out_new_clients_or_health_checks(tmp_path, wordcount_env, many_files):
    with running_server(config(threads=4), tmp_path, env=wordcount_env) as server:
        idle = []
        try:
            for index in range(IDLE_CONNECTIONS):
                sock = connect(server)
                if index % 5 == 0:  # a kept-alive connection after a real request, the rest never sent one
                    sock.sendall(predict_request("one two"))
                    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
                idle.append(sock)
            live = server.request("GET", "/health/live", timeout=10)
            assert live.status == 200
            answer = server.request("POST", "/predict", json={"model_name": "wordcount", "data": "a b c"}, timeout=10)
            assert (answer.status, answer.json()["body"]) == (200, {"words": 3})
        finally:
            for sock in idle:
                sock.close()


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(tmp_path, wordcount_env):
    with running_server(config(idle_timeout_seconds=1), tmp_path, env=wordcount_env) as server:
        connection = http.client.HTTPConnection(*address(server), timeout=10)
        try:
            connection.request("POST", "/predict", body=json.dumps({"model_name": "wordcount", "data": "one two"}),
                               headers={"Content-Type": "application/json"})
            answer = connection.getresponse()
            assert (answer.status, json.loads(answer.read())["body"]) == (200, {"words": 2})
            assert not answer.will_close  # kept alive ...
            assert read_until_closed(connection.sock) == b""  # ... until the server closes it, sending nothing
        finally:
            connection.close()


def test_a_body_shorter_than_its_content_length_is_answered_408(tmp_path, wordcount_env):
    with running_server(config(read_timeout_seconds=1), tmp_path, env=wordcount_env) as server:
        with connect(server, timeout=10) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"model_name\": ")
            answer = read_until_closed(sock)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 Request Timeout")
        assert json.loads(body) == {"error": {"status": 408, "message": (
            "request timeout: no bytes of the request arrived for 1 s (is Content-Length larger than the body "
            "sent?); send the whole request promptly")}}
        assert server.request("GET", "/health/live").status == 200


def test_a_request_dripping_in_slower_than_the_request_timeout_is_answered_408(tmp_path, wordcount_env):
    with running_server(config(read_timeout_seconds=1, request_timeout_seconds=2), tmp_path,
                        env=wordcount_env) as server:
        request = predict_request("one two three")
        with connect(server, timeout=10) as sock:
            sent = 0
            try:
                while sent < len(request):  # one byte every 0.25 s: never silent for 1 s, never done
                    sock.sendall(request[sent:sent + 1])
                    sent += 1
                    time.sleep(0.25)
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = read_until_closed(sock)
        assert sent < len(request)
        assert answer.startswith(b"HTTP/1.1 408")
        assert b"the request was not received in full within 2 s" in answer


def test_sigterm_answers_every_request_in_flight_refuses_new_ones_and_exits_0(tmp_path, wordcount_env):
    with running_server(config(), tmp_path, env=wordcount_env) as server:
        host, port = address(server)

        def slow_request(index: int):
            return server.request("POST", "/predict", timeout=30,
                                  json={"model_name": "wordcount", "data": f"sleep:2 request {index}"})

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(slow_request, index) for index in range(8)]
            time.sleep(0.7)  # all eight are in the server now, the first batch is computing
            os.kill(server.pid, signal.SIGTERM)
            time.sleep(0.8)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((host, port), timeout=5)
            answers = [future.result() for future in futures]
        assert [answer.status for answer in answers] == [200] * 8, [answer.text for answer in answers]
        assert all(answer.json()["body"] == {"words": 3} for answer in answers)
        assert server.process.wait(30) == 0
        assert "Traceback" not in server.output()


def test_sigterm_gives_up_on_requests_after_the_grace_period(tmp_path, wordcount_env):
    with running_server(config(shutdown_grace_seconds=1), tmp_path, env=wordcount_env) as server:
        with ThreadPoolExecutor(2) as pool:
            stuck = pool.submit(server.request, "POST", "/predict", timeout=60,
                                json={"model_name": "wordcount", "data": "sleep:20 far too long"})
            time.sleep(0.5)
            queued = pool.submit(server.request, "POST", "/predict", timeout=60,
                                 json={"model_name": "wordcount", "data": "queued behind it"})
            time.sleep(0.5)
            signalled = time.monotonic()
            os.kill(server.pid, signal.SIGTERM)
            assert server.process.wait(15) == 0
            exited_after = time.monotonic() - signalled
            answer = queued.result()
            assert answer.status == 503 and "shutting down" in answer.json()["error"]["message"]
            with pytest.raises(OSError):  # the request that outlived the grace period is cut off
                stuck.result()
        assert exited_after < 10  # grace (1 s) + final flush (2 s), far from the 20 s request
