"""The open-loop generator (bench/openloop.py) records why a request was refused, so a soak's
unexpected 503 can be explained from its results alone."""

from __future__ import annotations

import json
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
