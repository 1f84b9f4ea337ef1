"""Hostile request bodies get a precise 400, never a 500: the cases found by hand, by hypothesis and
by the atheris fuzzer (tests/fuzz), kept as regressions.

Each went wrong before the bounded decoder (``modeldeploy.inputs.decode_json``): a lone surrogate
passed ``json.loads`` and failed when a tokenizer or the OIP encoder met it, deep nesting raised
``RecursionError`` and numbers of thousands of digits ``ValueError`` inside ``json.loads``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from modeldeploy.errors import InvalidInputError
from modeldeploy.inputs import normalize_texts

ECHO = {"models": {"echo": {}}, "serve": ["echo"]}
INFER = "/v2/models/echo/infer"
MAX_JSON_DEPTH = 64  # the documented limits (modeldeploy.inputs), spelled out so this file runs on old code too
MAX_NUMBER_DIGITS = 1000


@pytest.fixture
def client(echo, app_for):
    return app_for(ECHO)[0]


def tensor(data: Any, shape: Any = None, **fields: Any) -> dict[str, Any]:
    """An infer request with one ``text`` input."""
    shape = [len(data)] if shape is None else shape
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": shape, "data": data}], **fields}


def nested(depth: int) -> str:
    """``depth`` arrays inside each other, innermost holding one text: ``[["x"]]`` for 2."""
    return "[" * depth + '"x"' + "]" * depth


def predict_error(client, raw: bytes | str) -> str:
    response = client.post("/predict", data=raw)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json["error"]["status"] == 400
    return response.json["error"]["message"]


def infer_error(client, raw: bytes | str) -> str:
    response = client.post(INFER, data=raw)
    assert response.status_code == 400, response.get_data(as_text=True)
    return response.json["error"]


# --------------------------------------------------------------------------- lone surrogates
def test_lone_surrogate_in_predict_data_is_400_naming_the_field(client):
    message = predict_error(client, '{"model_name": "echo", "data": "ok \\ud800"}')
    assert message.startswith("request body field 'data' is not valid Unicode text: lone surrogate U+D800 at index 3")
    message = predict_error(client, '{"model_name": "echo", "data": ["fine", "\\udc00"]}')
    assert "field 'data[1]'" in message and "U+DC00 at index 0" in message


def test_lone_surrogate_anywhere_in_the_body_is_400(client):
    assert "field 'model_name'" in predict_error(client, '{"model_name": "\\ud800", "data": "x"}')
    assert "a key in the top-level object" in predict_error(client, '{"model_name": "echo", "data": "x", "\\udfff": 1}')


def test_surrogate_pairs_are_one_character_and_welcome(client):
    response = client.post("/predict", data='{"model_name": "echo", "data": "\\ud83d\\ude00"}')
    assert response.status_code == 200 and response.json["body"] == {"length": 1}


def test_utf8_encoded_surrogate_bytes_are_not_utf8(client):
    """CESU-style bytes ED A0 80: ``json.loads(bytes)`` decoded them with 'surrogatepass'."""
    message = predict_error(client, b'{"model_name": "echo", "data": "\xed\xa0\x80"}')
    assert message == "request body is not valid JSON: it is not UTF-8 text (byte 0xed at offset 32)"


def test_lone_surrogate_in_infer_data_and_id_is_400(client):
    assert "field 'inputs[0].data[1]'" in infer_error(client, json.dumps(tensor(["a", "\ud800"])))
    # the id used to reach the response encoder and fail there with a 500
    assert "field 'id'" in infer_error(client, json.dumps(tensor(["a"], id="\udbff")))


def test_python_api_refuses_lone_surrogates_before_the_tokenizer():
    """``normalize_texts`` validates every predict call (HTTP, Registry.predict, Batcher.predict)."""
    expected = r"^data\[1\] is not valid Unicode text: lone surrogate U\+D800 at index 2"
    with pytest.raises(InvalidInputError, match=expected):
        normalize_texts(["ok", "ab\ud800"])
    with pytest.raises(InvalidInputError, match=r"^data is not valid Unicode"):
        normalize_texts("\udfff")


# --------------------------------------------------------------------------- deep nesting
def test_deep_nesting_is_400_with_the_field_and_place(client):
    message = predict_error(client, '{"model_name": "echo", "data": ' + nested(100_000) + "}")
    assert message == (f"request body field 'data' nests arrays and objects more than {MAX_JSON_DEPTH} levels deep, "
                       "at line 1 column 95 (char 94)")  # the body object is level 1
    objects = '{"model_name": "echo", "data": "x", "meta": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}"
    assert "field 'meta' nests arrays and objects" in predict_error(client, objects)
    deep_tensor = '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ' + nested(3000) + "}]}"
    assert "field 'inputs' nests" in infer_error(client, deep_tensor)


def test_nesting_up_to_the_limit_is_decoded(client):
    def body(depth: int) -> str:  # the body object is level 1, so "deep" reaches 1 + depth
        return '{"model_name": "echo", "data": "x", "deep": ' + nested(depth) + "}"

    assert client.post("/predict", data=body(MAX_JSON_DEPTH - 1)).status_code == 200
    assert predict_error(client, body(MAX_JSON_DEPTH)).endswith(
        "field 'deep' nests arrays and objects more than 64 levels deep, at line 1 column 108 (char 107)")


def test_brackets_inside_strings_are_not_nesting(client):
    response = client.post("/predict", json={"model_name": "echo", "data": "[{" * 5000})
    assert response.status_code == 200 and response.json["body"] == {"length": 10_000}


# --------------------------------------------------------------------------- huge numbers
def test_number_with_thousands_of_digits_is_400(client):
    message = predict_error(client, '{"model_name": "echo", "data": ' + "7" * 5000 + "}")
    assert message == ("request body field 'data' has a number with 5000 digits in a row, "
                       f"at most {MAX_NUMBER_DIGITS} are accepted, at line 1 column 32 (char 31)")
    negative = '{"model_name": "echo", "data": "x", "n": -' + "1" * 4301 + "}"
    assert "field 'n' has a number with 4301 digits" in predict_error(client, negative)
    long_shape = '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [' + "9" * 6000 + '], "data": ["x"]}]}'
    assert "field 'inputs' has a number with 6000 digits" in infer_error(client, long_shape)


def test_numbers_up_to_the_limit_and_digits_in_strings_are_fine(client):
    big = "9" * MAX_NUMBER_DIGITS
    response = client.post("/predict", data='{"model_name": "echo", "data": "' + big * 3 + '", "n": ' + big + "}")
    assert response.status_code == 200 and response.json["body"] == {"length": 3 * MAX_NUMBER_DIGITS}


def test_huge_shape_product_is_400_not_a_huge_integer(client):
    """Fifty 1000-digit dimensions pass the number limit; their product (50 000 digits) took time
    to compute and could not be printed in the error message (a 500)."""
    shape = [10**999] * 50
    message = infer_error(client, json.dumps(tensor(["x"], shape=shape)))
    assert message.endswith("(more than 2**63-1 elements) but 1 data elements")


def test_nan_and_infinity_are_not_json(client):
    assert predict_error(client, '{"model_name": "echo", "data": "x", "t": NaN}') == (
        "request body is not valid JSON: NaN is not a JSON number")
    assert infer_error(client, '{"inputs": [], "x": -Infinity}') == (
        "request body is not valid JSON: -Infinity is not a JSON number")


def test_numbers_past_the_float_range_are_refused_like_infinity(client):
    """Found by the atheris campaign (tests/fuzz/corpus/found-float-overflow-to-inf.json)."""
    assert predict_error(client, '{"model_name": "echo", "data": "x", "n": 9999997e806}') == (
        "request body has a number out of the 64-bit float range: 9999997e806")
    assert client.post("/predict", data='{"model_name": "echo", "data": "x", "n": -1.5e308}').status_code == 200


def test_a_utf8_byte_order_mark_is_still_accepted(client):
    response = client.post("/predict", data=b"\xef\xbb\xbf" + json.dumps({"model_name": "echo", "data": "x"}).encode())
    assert response.status_code == 200
