"""Open Inference Protocol (KServe V2) tensors <-> modeldeploy texts and results.

Every model takes one input, ``text`` (``BYTES``, any shape; each element is one text), and
returns one output, ``result``. For most models it is ``BYTES`` of the input's shape, each
element the JSON text of that item's result, exactly what ``/predict`` returns for it: one
generic mapping keeps every plugin's model reachable from any OIP client without per-task
tensor layouts. A model whose results are vectors (``result_datatype = "FP32"``, embeddings)
returns a real ``FP32`` tensor instead, of shape input shape + ``[dimension]``, its data in
row-major order (JSON numbers, or little-endian 4-byte floats as binary data).

The binary tensor data extension is supported both ways, because ``tritonclient`` uses it by
default: an ``Inference-Header-Content-Length`` header splits the body into the JSON header and
the raw tensors, and ``BYTES`` elements travel as a 4-byte little-endian length + the bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modeldeploy.errors import InvalidInputError, PluginContractError
from modeldeploy.inputs import decode_json

INPUT_NAME = "text"
OUTPUT_NAME = "result"
DATATYPE = "BYTES"
FP32 = "FP32"
HEADER_LENGTH = "Inference-Header-Content-Length"
_LENGTH_PREFIX = struct.Struct("<I")
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class InferRequest:
    """A parsed infer request: the texts in row-major order and how to answer."""

    texts: list[str]
    shape: list[int]
    id: str | None
    binary_output: bool
    #: Seconds, from the request's ``timeout`` parameter (microseconds, as Triton's clients send it).
    timeout: float | None = None


def tensor_metadata(name: str, datatype: str = DATATYPE, item_shape: Sequence[int] = ()) -> dict[str, Any]:
    """A tensor's metadata: ``-1`` for the batch dimension, then each item's shape."""
    return {"name": name, "datatype": datatype, "shape": [-1, *item_shape]}


# --------------------------------------------------------------------------- request
def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """Validate an infer request body (JSON, or JSON + binary tensors); 400 on any mistake."""
    header, binary = _split_body(body, header_length)
    document = decode_json(header)  # bounded: no deep nesting, huge numbers or lone surrogates
    if not isinstance(document, dict):
        raise InvalidInputError(f"request body must be a JSON object, got {type(document).__name__}")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInputError("'id' must be a string")
    parameters = _parameters(document, "request")
    texts, shape, used = _parse_inputs(document.get("inputs"), binary)
    if used != len(binary):
        raise InvalidInputError(
            f"the body has {len(binary)} bytes of binary tensor data but the inputs declare {used}"
        )
    binary_output = _parse_outputs(document.get("outputs"), _flag(parameters, "binary_data_output", "request"))
    return InferRequest(texts=texts, shape=shape, id=request_id, binary_output=binary_output,
                        timeout=_timeout_seconds(parameters))


def _timeout_seconds(parameters: dict[str, Any]) -> float | None:
    """The request's ``timeout`` parameter in seconds: a positive whole number of microseconds."""
    value = parameters.get("timeout")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidInputError(f"request parameter 'timeout' must be a positive whole number of microseconds, "
                                f"got {value!r}")
    return value / 1e6


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise InvalidInputError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
    if not 0 <= length <= len(body):
        raise InvalidInputError(f"{HEADER_LENGTH} is {length} but the body has {len(body)} bytes")
    return body[:length], body[length:]


def _parameters(owner: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = owner.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidInputError(f"{where} 'parameters' must be an object")
    return parameters


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInputError(f"{where} parameter {key!r} must be true or false")
    return value


def _parse_inputs(inputs: Any, binary: bytes) -> tuple[list[str], list[int], int]:
    expected = f"this model takes exactly one input named {INPUT_NAME!r} with datatype {DATATYPE}"
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidInputError(f"'inputs' must be a list of one tensor: {expected}")
    tensor = inputs[0]
    if tensor.get("name") != INPUT_NAME:
        raise InvalidInputError(f"unknown input {tensor.get('name')!r}: {expected}")
    if tensor.get("datatype") != DATATYPE:
        raise InvalidInputError(f"input {INPUT_NAME!r} has datatype {tensor.get('datatype')!r}: {expected}")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not shape or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInputError(f"input {INPUT_NAME!r} needs a 'shape': a non-empty list of non-negative integers")
    parameters = _parameters(tensor, f"input {INPUT_NAME!r}")
    size = parameters.get("binary_data_size")
    if size is None:
        texts, used = _json_elements(tensor.get("data")), 0
    else:
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= len(binary):
            raise InvalidInputError(
                f"input {INPUT_NAME!r} binary_data_size must be an integer within the {len(binary)} binary bytes sent"
            )
        texts, used = _binary_elements(binary[:size]), size
    elements = _element_count(shape)
    if elements != len(texts):
        counted = "more than 2**63-1" if elements is None else elements
        raise InvalidInputError(
            f"input {INPUT_NAME!r} has shape {shape} ({counted} elements) but {len(texts)} data elements"
        )
    if not texts:
        raise InvalidInputError(f"input {INPUT_NAME!r} has no elements; send at least one text")
    return texts, shape, used


def _element_count(shape: list[int]) -> int | None:
    """The product of ``shape``, or None once it is past what the protocol's int64 holds: a hostile
    shape (a thousand 1000-digit dimensions) would make a product too slow to compute or print."""
    count = 0 if 0 in shape else 1
    for dimension in shape:
        count *= dimension
        if count > _INT64_MAX:
            return None
    return count


def _json_elements(data: Any) -> list[str]:
    """Flatten (possibly nested, row-major) JSON data; every element must be a string."""
    if not isinstance(data, list):
        raise InvalidInputError(f"input {INPUT_NAME!r} needs 'data': a list of strings (or binary data)")
    flat: list[str] = []
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(reversed(item))
        elif isinstance(item, str):
            flat.append(item)
        else:
            raise InvalidInputError(f"input {INPUT_NAME!r} elements must be strings, got {type(item).__name__}")
    return flat


def _binary_elements(raw: bytes) -> list[str]:
    """Decode BYTES elements: each is a little-endian uint32 length followed by UTF-8 text."""
    texts: list[str] = []
    offset = 0
    while offset < len(raw):
        if offset + _LENGTH_PREFIX.size > len(raw):
            raise InvalidInputError(f"input {INPUT_NAME!r} binary data ends inside an element's length prefix")
        (length,) = _LENGTH_PREFIX.unpack_from(raw, offset)
        offset += _LENGTH_PREFIX.size
        if offset + length > len(raw):
            raise InvalidInputError(f"input {INPUT_NAME!r} binary element {len(texts)} runs past the data")
        try:
            texts.append(raw[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidInputError(f"input {INPUT_NAME!r} element {len(texts)} is not UTF-8 text") from None
        offset += length
    return texts


def _parse_outputs(outputs: Any, binary_default: bool) -> bool:
    """Whether ``result`` goes back as binary data; requested outputs must exist."""
    if outputs is None:
        return binary_default
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise InvalidInputError("'outputs' must be a list of objects")
    binary = binary_default
    for output in outputs:
        if output.get("name") != OUTPUT_NAME:
            raise InvalidInputError(f"unknown output {output.get('name')!r}; this model has one output, {OUTPUT_NAME!r}")
        parameters = _parameters(output, f"output {OUTPUT_NAME!r}")
        if "binary_data" in parameters:
            binary = _flag(parameters, "binary_data", f"output {OUTPUT_NAME!r}")
    return binary


# --------------------------------------------------------------------------- response
def _bytes_output(request: InferRequest, results: Sequence[Any]) -> tuple[dict[str, Any], bytes]:
    elements = [json.dumps(result, ensure_ascii=False).encode("utf-8") for result in results]
    output: dict[str, Any] = {"name": OUTPUT_NAME, "datatype": DATATYPE, "shape": request.shape}
    if not request.binary_output:
        output["data"] = [e.decode("utf-8") for e in elements]
        return output, b""
    raw = b"".join(_LENGTH_PREFIX.pack(len(e)) + e for e in elements)
    output["parameters"] = {"binary_data_size": len(raw)}
    return output, raw


def _fp32_output(request: InferRequest, results: Sequence[Any]) -> tuple[dict[str, Any], bytes]:
    """Vectors of one length -> an FP32 tensor of shape request shape + [length]."""
    width = len(results[0]) if results and isinstance(results[0], list) else -1
    if any(not isinstance(r, list) or len(r) != width for r in results):
        raise PluginContractError(f"an FP32 model must return one vector of floats per text, all of one length; "
                                  f"got {type(results[0]).__name__ if results else 'nothing'}")
    flat = [value for vector in results for value in vector]
    output: dict[str, Any] = {"name": OUTPUT_NAME, "datatype": FP32, "shape": [*request.shape, width]}
    if not request.binary_output:
        output["data"] = flat
        return output, b""
    raw = struct.pack(f"<{len(flat)}f", *flat)
    output["parameters"] = {"binary_data_size": len(raw)}
    return output, raw


def encode_infer_response(
    model_name: str, model_version: str, request: InferRequest, results: Sequence[Any], datatype: str = DATATYPE
) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers (binary responses carry the JSON header length)."""
    if datatype == FP32:
        output, raw = _fp32_output(request, results)
    else:
        output, raw = _bytes_output(request, results)
    document: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": [output]}
    if request.id is not None:
        document["id"] = request.id
    header = json.dumps(document, ensure_ascii=False).encode("utf-8")
    if not request.binary_output:
        return header, {"Content-Type": "application/json"}
    return header + raw, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
