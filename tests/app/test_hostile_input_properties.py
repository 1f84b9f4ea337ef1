"""Property-based fuzzing of ``/predict`` and ``/v2/.../infer`` through Flask's test client (fast).

Whatever the body (arbitrary bytes, arbitrary JSON with lone surrogates, NaN, deep nesting, long
numbers, OIP tensors of any shape), the answer is never a 5xx, errors keep each protocol's body
format, and successes are exactly what the echo model computes. Derandomized, so every run tries
the same examples; cases these found are kept in test_hostile_input.py.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

ECHO = {"models": {"echo": {}}, "serve": ["echo"]}
INFER = "/v2/models/echo/infer"
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")

fuzz = settings(max_examples=120, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

#: Any text, lone surrogates included (hypothesis leaves them out unless asked), often a tricky one.
texts = st.text(st.characters(exclude_categories=()), max_size=12) | st.sampled_from(
    ["\ud800", "ok\udfff", "\udbff\ud800", "\ud83d\ude00", "\x00", "\\ud800", "[{", "99", ""])
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | texts
           | st.integers(min_value=1, max_value=3000).map(lambda n: 10**n))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=16)


@pytest.fixture
def client(echo, app_for):
    return app_for(ECHO)[0]


def encode(document: Any, ascii_only: bool) -> bytes:
    """JSON as clients send it: escaped (``\\ud800``) or raw; 'surrogatepass' keeps lone surrogates."""
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return bool(LONE_SURROGATE.search(value))
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    return isinstance(value, list) and any(has_lone_surrogate(v) for v in value)


def sends_lone_surrogate(document: Any, ascii_only: bool) -> bool:
    """Whether the server gets a lone surrogate: escaped, an adjacent high + low pair is one character."""
    return has_lone_surrogate(json.loads(json.dumps(document)) if ascii_only else document)


def has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(has_non_finite(v) for v in value.values())
    return isinstance(value, list) and any(has_non_finite(v) for v in value)


def has_long_number(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return len(str(abs(value))) > 1000
    if isinstance(value, dict):
        return any(has_long_number(v) for v in value.values())
    return isinstance(value, list) and any(has_long_number(v) for v in value)


def predict_status(client, raw: bytes) -> tuple[int, Any]:
    """POST ``raw`` to /predict; a non-200 answer must be the JSON API's error body."""
    response = client.post("/predict", data=raw)
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code != 200:
        error = response.json["error"]
        assert error["status"] == response.status_code and isinstance(error["message"], str) and error["message"]
    return response.status_code, response.json


def infer_status(client, raw: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST ``raw`` to /v2 infer; a non-200 answer must be the protocol's ``{"error": "..."}``."""
    response = client.post(INFER, data=raw, headers=headers or {})
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code != 200:
        assert set(response.json) == {"error"} and isinstance(response.json["error"], str)
    return response.status_code, response


@fuzz
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_never_5xx(client, raw):
    predict_status(client, raw)
    infer_status(client, raw)


@fuzz
@given(name=st.just("echo") | texts, data=texts | st.lists(texts, min_size=1, max_size=4) | json_values,
       extra=st.dictionaries(texts, json_values, max_size=3),
       ascii_only=st.booleans())
@example(name="echo", data="\ud800\udc00", extra={}, ascii_only=True)  # an escaped pair is one character
def test_predict_answers_any_json_exactly(client, name, data, extra, ascii_only):
    """200 exactly when the model is served and ``data`` is valid text(s); a precise 4xx otherwise."""
    document = {**extra, "model_name": name, "data": data}
    status, body = predict_status(client, encode(document, ascii_only))
    event(f"status {status}")
    texts_ok = isinstance(data, str) or (
        isinstance(data, list) and data != [] and all(isinstance(t, str) for t in data))
    invalid_text = sends_lone_surrogate(document, ascii_only)
    valid = (name == "echo" and texts_ok and not invalid_text
             and not has_non_finite(document) and not has_long_number(document))
    assert (status == 200) == valid, body
    if valid:
        # what the server decodes: escaped, an adjacent high + low surrogate pair is one character
        received = json.loads(json.dumps(data)) if ascii_only else data
        expected = [{"length": len(t)} for t in ([received] if isinstance(received, str) else received)]
        assert body["body"] == (expected[0] if isinstance(data, str) else expected)
    elif invalid_text and not has_long_number(document):  # escaped: a lone surrogate; raw: not UTF-8
        assert status == 400 and ("lone surrogate" if ascii_only else "not UTF-8 text") in body["error"]["message"]


@fuzz
@given(depth=st.integers(min_value=1, max_value=400), brackets=st.lists(st.sampled_from(["[", '{"k":']), min_size=1))
def test_nesting_is_refused_exactly_past_the_limit(client, depth, brackets):
    opening = [brackets[i % len(brackets)] for i in range(depth)]
    closing = ["]" if b == "[" else "}" for b in reversed(opening)]
    deep = "".join(opening) + "1" + "".join(closing)
    status, body = predict_status(client, ('{"model_name": "echo", "data": "x", "deep": ' + deep + "}").encode())
    assert (status == 400) == (depth + 1 > 64), body  # the body object is level 1
    if status == 400:
        assert "field 'deep' nests arrays and objects more than 64 levels deep" in body["error"]["message"]


@fuzz
@given(integer=st.integers(min_value=1, max_value=5000), fraction=st.integers(min_value=0, max_value=1500),
       sign=st.sampled_from(["", "-"]), exponent=st.sampled_from(["", "e5", "E-999", "e+12"]))
def test_long_numbers_are_refused_exactly_past_the_limit(client, integer, fraction, sign, exponent):
    number = sign + "7" * integer + ("." + "3" * fraction if fraction else "") + exponent
    status, body = predict_status(client, ('{"model_name": "echo", "data": "x", "n": ' + number + "}").encode())
    longest_first = integer if integer > 1000 else fraction  # the first run of digits past the limit
    out_of_range = bool(fraction or exponent) and math.isinf(float(number))
    assert (status == 400) == (longest_first > 1000 or out_of_range), body
    if longest_first > 1000:
        assert f"field 'n' has a number with {longest_first} digits in a row" in body["error"]["message"]
    elif out_of_range:
        assert "has a number out of the 64-bit float range" in body["error"]["message"]


dimensions = st.integers(min_value=-2, max_value=4) | st.integers(min_value=0, max_value=3000).map(lambda n: 10**n)
tensors = st.fixed_dictionaries(
    {"name": st.just("text") | texts, "datatype": st.sampled_from(["BYTES", "FP32"]),
     "shape": st.lists(dimensions, max_size=4) | json_values},
    optional={"data": st.lists(texts | st.lists(texts, max_size=3), max_size=6) | json_values,
              "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-1, 64) | json_values})
              | json_values},
)
well_formed = st.lists(texts, min_size=1, max_size=4).map(
    lambda items: {"name": "text", "datatype": "BYTES", "shape": [len(items)], "data": items})
infer_documents = st.fixed_dictionaries(
    {"inputs": st.tuples(well_formed).map(list) | st.lists(well_formed | tensors, min_size=1, max_size=2)
     | json_values},
    optional={"id": st.one_of(texts, texts, json_values),
              "outputs": st.lists(st.fixed_dictionaries({"name": st.just("result") | texts})) | json_values,
              "parameters": st.fixed_dictionaries({"binary_data_output": st.booleans() | json_values})},
)


@st.composite
def binary_tensors(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """A request whose texts travel as binary tensor data: length-prefixed elements, any bytes."""
    elements = draw(st.lists(st.binary(max_size=8) | texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
                             min_size=1, max_size=4))
    raw = b"".join(len(e).to_bytes(4, "little") + e for e in elements) + draw(st.binary(max_size=3))
    size = draw(st.just(len(raw)) | st.integers(min_value=-1, max_value=len(raw) + 2))
    tensor = {"name": "text", "datatype": "BYTES", "shape": [len(elements)], "parameters": {"binary_data_size": size}}
    return {"inputs": [tensor]}, raw


@fuzz
@given(request=st.tuples(infer_documents, st.binary(max_size=64)) | binary_tensors(), split=st.booleans(),
       ascii_only=st.booleans())
def test_infer_answers_any_request_without_5xx(client, request, split, ascii_only):
    """Any OIP request, with or without binary tensor data; a 200 carries one result per text."""
    document, binary = request
    header = encode(document, ascii_only)
    headers = {"Inference-Header-Content-Length": str(len(header))} if split else None
    status, response = infer_status(client, header + binary if split else header, headers)
    event(f"status {status}")  # --hypothesis-show-statistics shows how often each status came back
    if status == 200:
        length = int(response.headers.get("Inference-Header-Content-Length", len(response.data)))
        output = json.loads(response.data[:length])["outputs"][0]
        assert output["name"] == "result" and output["shape"] == document["inputs"][0]["shape"]
        assert not sends_lone_surrogate(document, ascii_only)
