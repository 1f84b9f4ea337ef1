"""Hostile bodies through the real server process (waitress's body reader, real tokenizers).

Fuzzes what the test client cannot show: raw bytes on the socket, chunked transfer encoding,
any Content-Type, GET with a body. The server must answer each with a JSON 4xx or a 200, log
no unhandled error, and keep serving.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_server import LiveServer, Response

PREDICT = "/predict"
INFER = "/v2/models/sentiment/infer"
ISSUE_EXAMPLE = b'{"model_name":"sentiment","data":"\\ud800"}'  # issue 13, verbatim


def send(server: LiveServer, method: str, path: str, body: bytes, content_type: str | None,
         chunks: list[int] | None) -> Response:
    """One raw request: ``body`` as is, in chunks of the given sizes (chunked encoding) or whole."""
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        if chunks is None:
            connection.request(method, path, body=body, headers=headers)
        else:
            pieces, offset = [], 0
            for size in chunks + [len(body)]:
                pieces.append(body[offset : offset + size])
                offset += size
            connection.request(method, path, body=iter([p for p in pieces if p]), headers=headers,
                               encode_chunked=True)
        answer = connection.getresponse()
        return Response(answer.status, answer.headers, answer.read())
    finally:
        connection.close()


def assert_clean(response: Response, path: str) -> None:
    """A 200 or a 4xx whose body is the route's JSON error format."""
    assert response.status < 500, response.text
    if response.status != 200:
        error = response.json()["error"]
        assert isinstance(error, str) if path.startswith("/v2") else error["status"] == response.status


def test_issue_example_lone_surrogate_is_400_through_the_tokenizer_server(tiny_server):
    response = send(tiny_server, "POST", PREDICT, ISSUE_EXAMPLE, "application/json", None)
    assert response.status == 400, response.text
    assert response.json()["error"]["message"].startswith(
        "request body field 'data' is not valid Unicode text: lone surrogate U+D800 at index 0")


@pytest.mark.parametrize("body, message", [
    (b'{"model_name": "sentiment", "data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "more than 64 levels deep"),
    (b'{"model_name": "sentiment", "data": ' + b"1" * 50_000 + b"}", "a number with 50000 digits in a row"),
    (b'{"model_name": "sentiment", "data": "\xed\xa0\x80"}', "not UTF-8 text (byte 0xed at offset 37)"),
])
def test_hostile_bodies_chunked_or_whole_are_400(tiny_server, body, message):
    for chunks in (None, [1, 7, 4096]):
        response = send(tiny_server, "GET", PREDICT, body, None, chunks)
        assert response.status == 400 and message in response.json()["error"]["message"], response.text


hostile_json = st.sampled_from([
    b'{"model_name": "sentiment", "data": "fine"}',
    b'{"model_name": "ner", "data": ["a", "b"]}',
    ISSUE_EXAMPLE,
    b'{"model_name": "sentiment", "data": ["\\ud83d\\ude00", "\\udc00x"]}',
    b'{"model_name": "sentiment", "data": "x", "n": ' + b"9" * 5000 + b"}",
    b'{"model_name": "sentiment", "data": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"model_name": "summarization", "data": NaN}',
    b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["\\ud800"]}]}',
    b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["ok"]}], "id": "\\udfff"}',
    b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [' + b"7" * 999 + b', 0], "data": []}]}',
])
bodies = hostile_json | st.binary(max_size=200) | st.tuples(hostile_json, st.binary(max_size=8)).map(b"".join)
content_types = st.sampled_from([None, "application/json", "text/plain; charset=latin-1", "application/octet-stream",
                                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz"])


@settings(max_examples=60, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=st.sampled_from(["GET", "POST"]), body=bodies, content_type=content_types,
       chunks=st.none() | st.lists(st.integers(min_value=1, max_value=64), max_size=4))
def test_raw_bodies_over_http_never_5xx(tiny_server, method, body, content_type, chunks):
    for path in (PREDICT, INFER):
        if path == INFER and method == "GET":
            continue  # infer is POST only: a 405, not a body reader
        assert_clean(send(tiny_server, method, path, body, content_type, chunks), path)


def test_server_logged_no_unhandled_error_and_still_serves(tiny_server):
    """Runs after the fuzzing above (file order): nothing reached the generic 500 handler."""
    assert "unhandled error" not in tiny_server.output()
    response = tiny_server.request("POST", PREDICT, json={"model_name": "sentiment", "data": "still here"})
    assert response.status == 200, response.text
