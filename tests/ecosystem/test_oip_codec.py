"""The OIP tensor mapping on its own: every malformed request gets a precise 400 message.

Binary tensors are built and read with tritonclient's own (de)serializers, so the wire format
is checked against the reference implementation, not against a copy of ours.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from modeldeploy.app.oip_codec import InferRequest, encode_infer_response, parse_infer_request
from modeldeploy.errors import InvalidInputError


def body(inputs=None, **fields) -> bytes:
    inputs = inputs if inputs is not None else [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]
    return json.dumps({"inputs": inputs, **fields}).encode()


def binary_body(texts: list[str], **fields) -> tuple[bytes, str]:
    raw = serialize_byte_tensor(np.array([t.encode() for t in texts], dtype=np.object_)).item()
    header = body([{"name": "text", "datatype": "BYTES", "shape": [len(texts)],
                    "parameters": {"binary_data_size": len(raw)}}], **fields)
    return header + raw, str(len(header))


def rejects(raw: bytes, message: str, header_length: str | None = None) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_infer_request(raw, header_length)


def test_json_texts_flat_and_nested() -> None:
    parsed = parse_infer_request(body([{"name": "text", "datatype": "BYTES", "shape": [2, 2],
                                        "data": [["a", "b"], ["c", "d"]]}], id="7"), None)
    assert parsed == InferRequest(texts=["a", "b", "c", "d"], shape=[2, 2], id="7", binary_output=False)


def test_binary_texts_as_tritonclient_encodes_them() -> None:
    raw, length = binary_body(["Zürich", "", "東京"], parameters={"binary_data_output": True})
    parsed = parse_infer_request(raw, length)
    assert parsed.texts == ["Zürich", "", "東京"] and parsed.binary_output


def test_output_parameter_overrides_the_request_default() -> None:
    raw = body(parameters={"binary_data_output": True}, outputs=[{"name": "result", "parameters": {"binary_data": False}}])
    assert not parse_infer_request(raw, None).binary_output


@pytest.mark.parametrize(("raw", "message"), [
    (b"{nope", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[]", "must be a JSON object"),
    (json.dumps({"inputs": []}).encode(), "exactly one input named 'text'"),
    (body([{"name": "ids", "datatype": "BYTES", "shape": [1], "data": ["x"]}]), "unknown input 'ids'"),
    (body([{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]), "datatype 'FP32'"),
    (body([{"name": "text", "datatype": "BYTES", "shape": [-1], "data": ["x"]}]), "non-negative integers"),
    (body([{"name": "text", "datatype": "BYTES", "shape": [True], "data": ["x"]}]), "non-negative integers"),
    (body([{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["x"]}]), r"shape \[2\] \(2 elements\) but 1"),
    (body([{"name": "text", "datatype": "BYTES", "shape": [0], "data": []}]), "no elements"),
    (body([{"name": "text", "datatype": "BYTES", "shape": [1], "data": [3]}]), "must be strings, got int"),
    (body([{"name": "text", "datatype": "BYTES", "shape": [1]}]), "needs 'data'"),
    (body([{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"], "parameters": []}]), "must be an object"),
    (body(id=5), "'id' must be a string"),
    (body(outputs=[{"name": "logits"}]), "unknown output 'logits'"),
    (body(parameters={"binary_data_output": "yes"}), "must be true or false"),
])
def test_malformed_json_requests(raw: bytes, message: str) -> None:
    rejects(raw, message)


def test_malformed_binary_requests() -> None:
    raw, length = binary_body(["hello", "world"])
    rejects(raw, "must be an integer", "twelve")
    rejects(raw, "but the body has", str(len(raw) + 1))
    rejects(raw + b"extra", "inputs declare", length)
    for tensor, message in [
        (b"\x0a\x00\x00\x00abc", "runs past the data"),  # says 10 bytes, has 3
        (b"\x05\x00\x00\x00hello\x05\x00", "length prefix"),  # cut inside the second length
        (b"\x02\x00\x00\x00\xff\xfe", "not UTF-8"),
    ]:
        header = body([{"name": "text", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(tensor)}}])
        rejects(header + tensor, message, str(len(header)))
    oversized = body([{"name": "text", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 99}}])
    rejects(oversized + b"\x00" * 4, "within the 4 binary bytes", str(len(oversized)))


def test_json_response_carries_json_text_per_element() -> None:
    request = InferRequest(texts=["a", "b"], shape=[2], id="x", binary_output=False)
    raw, headers = encode_infer_response("m", "1", request, [{"label": "POSITIVE"}, [{"word": "Paris"}]])
    document = json.loads(raw)
    assert headers == {"Content-Type": "application/json"}
    assert document == {"model_name": "m", "model_version": "1", "id": "x", "outputs": [
        {"name": "result", "datatype": "BYTES", "shape": [2], "data": ['{"label": "POSITIVE"}', '[{"word": "Paris"}]']}]}


def test_binary_response_is_readable_by_tritonclient() -> None:
    request = InferRequest(texts=["a", "b"], shape=[1, 2], id=None, binary_output=True)
    raw, headers = encode_infer_response("m", "1", request, [{"summary_text": "café"}, {"summary_text": ""}])
    length = int(headers["Inference-Header-Content-Length"])
    document = json.loads(raw[:length])
    output = document["outputs"][0]
    assert "data" not in output and "id" not in document and output["shape"] == [1, 2]
    elements = deserialize_bytes_tensor(raw[length:length + output["parameters"]["binary_data_size"]])
    assert [json.loads(e) for e in elements] == [{"summary_text": "café"}, {"summary_text": ""}]
    assert len(raw) == length + output["parameters"]["binary_data_size"]
