"""The open-loop generator (bench/openloop.py) records why a request was refused, so a soak's
unexpected 503 can be explained from its results alone; with a period, it offers every period the
same work."""

from __future__ import annotations

import json
import random
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import openloop  # noqa: E402
from overload import error_reasons  # noqa: E402

#: What the stand-in server answers to each body: modeldeploy's and OIP's error shapes, a chunked
#: answer and a body that is not JSON.
ANSWERS = {
    b"ok": (200, {"result": "fine"}, False),
    b"busy": (503, {"error": {"status": 503, "message": "model 'x' is overloaded: predicted wait 3.1 s"}}, False),
    b"oip": (503, {"error": "model 'y' is not ready"}, True),
    b"odd": (502, None, False),
}


class Answering(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        status, payload, chunked = ANSWERS[self.rfile.read(int(self.headers["Content-Length"]))]
        body = b"upstream <b>gone</b>" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (body[:5], body[5:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_each_record_keeps_the_reason_of_an_answer_other_than_200(server) -> None:
    stream = openloop.Stream("x", rate=80.0, bodies=list(ANSWERS))
    run = openloop.run("127.0.0.1", server.server_address[1], [stream], seconds=1.0, client_timeout=10.0)
    records = run["records"]
    assert len(records) >= 20
    expected = {"200": "", "503": {"model 'x' is overloaded: predicted wait 3.1 s", "model 'y' is not ready"},
                "502": "upstream <b>gone</b>"}
    assert {r.status for r in records} == set(expected)
    for record in records:
        wanted = expected[record.status]
        assert record.reason in wanted if isinstance(wanted, set) else record.reason == wanted, record
    assert {r.reason for r in records if r.status == "503"} == expected["503"]  # chunked answers read whole too

    grouped = error_reasons([r for r in records if r.status != "200"])
    assert sum(g["count"] for g in grouped) == sum(1 for r in records if r.status != "200")
    assert {(g["status"], g["reason"]) for g in grouped} == {
        ("503", "model 'x' is overloaded: predicted wait 3.1 s"), ("503", "model 'y' is not ready"),
        ("502", "upstream <b>gone</b>")}
    assert [g["count"] for g in grouped] == sorted((g["count"] for g in grouped), reverse=True)


def test_a_period_repeats_the_same_arrivals_and_texts() -> None:
    def within(arrivals: list[tuple[float, int]], start: float) -> list[tuple[float, int]]:
        """The arrivals due in [start, start + 1), their times from the span's start."""
        return [(round(due - start, 9), index) for due, index in arrivals if start <= due < start + 1]

    fresh = openloop.schedule(50.0, 7, 3.0, random.Random(1))
    periodic = openloop.schedule(50.0, 7, 3.0, random.Random(1), period=1.0)
    assert within(periodic, 0) == within(fresh, 0)  # the same draws, up to the period
    assert within(periodic, 1) == within(periodic, 2) == within(periodic, 0)
    assert within(fresh, 1) != within(fresh, 0)  # without a period, each span has its own
    assert len(periodic) == 3 * len(within(periodic, 0)) and max(due for due, _ in periodic) < 3.0


def test_the_generator_sends_each_period_the_same_bodies(server) -> None:
    stream = openloop.Stream("x", rate=40.0, bodies=[b"ok", b"busy", b"oip", b"odd"])
    run = openloop.run("127.0.0.1", server.server_address[1], [stream], seconds=2.0, client_timeout=10.0,
                       seed=3, period=1.0)
    by_half = [sorted((round(r.due - k, 6), r.status) for r in run["records"] if k <= r.due < k + 1) for k in (0, 1)]
    assert by_half[0] and by_half[0] == by_half[1]
