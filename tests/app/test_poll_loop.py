"""The HTTP front's event loop (core/cli/poll_loop.py), in-process around a plain WSGI app.

Its sweeps (after each maintenance) are switched off here, so every answer below must reach its client through the
loop's own bookkeeping (events, task threads' trigger pulls, held responses falling due): a
connection the loop forgot would hang until the socket times out and fail the test.
"""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from modeldeploy.cli import http_server, poll_loop
from modeldeploy.config import ServerConfig

BIG = 40 * 1024 * 1024  # over waitress's 16 MiB outbuf high-water mark: the task thread waits for the loop
#: Set when the client of a held response hangs up before it is sent.
DROPPED = threading.Event()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/big":
        start_response("200 OK", [("Content-Length", str(BIG))])
        return (b"x" * (1024 * 1024) for _ in range(BIG // (1024 * 1024)))
    if path == "/held":
        environ[http_server.HOLD_RESPONSE](0.2)
    if path == "/held-long":
        environ[http_server.HOLD_RESPONSE](30, DROPPED.set)
    if path == "/answered":
        answered = repr(environ[http_server.CONNECTION_ANSWERED]).encode()
        start_response("200 OK", [("Content-Length", str(len(answered)))])
        return [answered]
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


@pytest.fixture
def server(monkeypatch) -> Iterator[http_server.HttpServer]:
    monkeypatch.setattr(poll_loop.PollLoop, "sweep", lambda self: None)  # no rescue by maintenance's sweeps
    served = http_server.HttpServer(app, ServerConfig(port=0, shutdown_grace_seconds=1), threads=4,
                                    max_body_bytes=1024)
    assert served.loop is not None
    thread = threading.Thread(target=served.serve, daemon=True)
    thread.start()
    yield served
    served._stop.set()
    thread.join(10)
    served.drain(stop_models=lambda: None)


@contextlib.contextmanager
def judged_server(judge: http_server.EarlyJudge) -> Iterator[http_server.HttpServer]:
    """A server whose requests ``judge`` sees first, on the loop's thread."""
    served = http_server.HttpServer(app, ServerConfig(port=0, shutdown_grace_seconds=1), threads=2,
                                    max_body_bytes=1024, judge=judge)
    thread = threading.Thread(target=served.serve, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        served._stop.set()
        thread.join(10)
        served.drain(stop_models=lambda: None)


def get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(65536)
    head, body = head.split(b"\r\n\r\n", 1)
    length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
                 .split(b":")[1])
    while len(body) < length:
        body += sock.recv(1024 * 1024)
    assert head.startswith(b"HTTP/1.1 200"), head
    return body


def connect(server: http_server.HttpServer) -> socket.socket:
    return socket.create_connection(server.addresses[0], timeout=10)


def test_answers_reach_their_clients_without_a_sweep(server) -> None:
    with connect(server) as sock:
        for _ in range(20):
            assert get(sock, "/") == b"ok"
        assert get(sock, "/held") == b"ok"  # sent when due: the loop is woken for that connection
        assert len(get(sock, "/big")) == BIG  # flushed while the task thread waits on the high-water mark
        assert get(sock, "/") == b"ok"


def test_a_client_that_hangs_up_on_a_held_answer_is_reported(server) -> None:
    DROPPED.clear()
    with connect(server) as sock:
        assert get(sock, "/held") == b"ok"  # sent when due: nothing dropped
        sock.sendall(b"GET /held-long HTTP/1.1\r\nHost: test\r\n\r\n")
        time.sleep(0.5)  # the answer is written and held for 30 s
        assert not DROPPED.is_set()
    assert DROPPED.wait(10)


def test_the_app_learns_when_the_connections_last_answer_went_out(server) -> None:
    with connect(server) as sock:
        assert get(sock, "/answered") == b"None"  # nothing answered on this connection yet
        sent = time.monotonic()
        assert get(sock, "/held") == b"ok"
        received = time.monotonic()
        # a held answer went out when its hold fell due, not when the app wrote it
        assert sent + 0.2 <= float(get(sock, "/answered")) <= received


def test_a_refusal_written_on_the_loop_thread_counts_as_the_connections_last_answer() -> None:
    seen: list[float | None] = []

    def judge(environ):
        seen.append(environ[http_server.CONNECTION_ANSWERED])
        if environ["PATH_INFO"] == "/refuse":
            return http_server.Refusal("503 SERVICE UNAVAILABLE", [("Content-Length", "2")], b"no")
        return None

    with judged_server(judge) as served, connect(served) as sock:
        sent = time.monotonic()
        sock.sendall(b"GET /refuse HTTP/1.1\r\nHost: test\r\n\r\n")
        answer = b""
        while not answer.endswith(b"no"):
            answer += sock.recv(65536)
        received = time.monotonic()
        assert answer.startswith(b"HTTP/1.1 503")
        assert get(sock, "/") == b"ok"
    assert seen[0] is None and sent <= seen[1] <= received


def test_a_judge_that_fails_passes_the_request_to_the_app(caplog) -> None:
    def failing(environ):
        raise RuntimeError("judge bug")

    with judged_server(failing) as served, connect(served) as sock:
        assert get(sock, "/") == b"ok"
    assert "the admission judge failed on GET /" in caplog.text and "judge bug" in caplog.text


def test_a_connection_the_answer_closes_is_closed(server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):  # socket.timeout unless the server closes it
            received += chunk
    assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"ok")


def test_idle_connections_are_not_asked_on_every_turn(server, monkeypatch) -> None:
    asked: collections.Counter[int] = collections.Counter()
    readable = http_server._Channel.readable

    def counting(channel):
        asked[id(channel)] += 1
        return readable(channel)

    idle = [connect(server) for _ in range(40)]
    with connect(server) as busy:
        assert get(busy, "/") == b"ok"  # the idle connections were accepted before it
        monkeypatch.setattr(http_server._Channel, "readable", counting)
        turns = 0
        run_once = server.loop.run_once

        def counting_turns(timeout):
            nonlocal turns
            turns += 1
            run_once(timeout)

        monkeypatch.setattr(server.loop, "run_once", counting_turns)
        for _ in range(30):
            assert get(busy, "/") == b"ok"
    assert turns >= 30
    busiest_idle = sorted(asked.values())[-2] if len(asked) > 1 else 0  # the busy connection is the most asked
    assert busiest_idle <= 1, f"an idle connection was asked {busiest_idle} times in {turns} turns"
    for sock in idle:
        sock.close()


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux's; elsewhere the loop uses poll()")
def test_epoll_modifies_what_it_watches_and_watches_a_reused_descriptor_afresh():
    poller = poll_loop._Epoll()
    first, first_peer = socket.socketpair()
    reused_number = first.fileno()
    poller.register(reused_number, select.POLLOUT)
    poller.register(reused_number, select.POLLIN)  # a second register modifies, as poll()'s does
    assert poller.poll(50) == []  # nothing to read yet, and no longer watched for writing
    first_peer.send(b"x")
    assert poller.poll(1000) == [(reused_number, select.POLLIN)]
    first.close()  # epoll drops a closed descriptor by itself; the loop's bookkeeping has not yet
    second, second_peer = socket.socketpair()
    try:
        assert second.fileno() == reused_number  # the kernel hands out the lowest free number
        poller.register(reused_number, select.POLLIN)  # the loop's "modify" of what it thinks it watches
        second_peer.send(b"y")
        assert poller.poll(1000) == [(reused_number, select.POLLIN)]
        poller.unregister(reused_number)
        poller.unregister(first_peer.fileno())  # never registered: nothing to drop, no error
        assert poller.poll(50) == []
    finally:
        for sock in (first_peer, second, second_peer):
            sock.close()
