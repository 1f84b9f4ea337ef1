"""One fuzz input through every request decoder, asserting what must hold whatever the bytes.

Shared by the atheris runner (``fuzz_decoders.py``, which instruments these modules for coverage)
and by the pytest replay of the regression corpus, which needs no atheris. The same bytes go to:

* ``decode_json`` (the body of ``/predict`` and the JSON part of ``/v2`` infer), then
  ``normalize_texts`` of its ``data`` field, as ``/predict`` does;
* ``parse_infer_request`` with no binary part, and split at the first newline into
  ``Inference-Header-Content-Length`` value + body (``57\\n{"inputs": ...}<binary tensors>``),
  then ``encode_infer_response`` echoing the texts back, as ``/v2`` infer does.

Refusals must be the project's input errors (a 400 over HTTP) with a message that encodes; any
other exception (``RecursionError``, ``ValueError``, ``UnicodeEncodeError``...) or a broken
invariant is a finding.
"""

from __future__ import annotations

import json
from typing import Any

from modeldeploy.app.oip_codec import encode_infer_response, parse_infer_request
from modeldeploy.errors import InputTypeError, InvalidInputError
from modeldeploy.inputs import MAX_JSON_DEPTH, MAX_NUMBER_DIGITS, decode_json, normalize_texts

REFUSALS = (InvalidInputError, InputTypeError)
_REFUSED = object()


def binary_infer_seed() -> bytes:
    """A valid ``/v2`` infer request with a binary BYTES tensor (two texts, ``a`` and ``b``), in the
    ``LEN\\n`` form :func:`check` splits: built here so no binary file is kept in the corpus."""
    header = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2],
                                     "parameters": {"binary_data_size": 10}}]}).encode()
    tensor = b"".join(len(text).to_bytes(4, "little") + text for text in (b"a", b"b"))
    return str(len(header)).encode() + b"\n" + header + tensor


#: Seeds built in code, beside the files of ``corpus/``.
GENERATED_SEEDS = {"seed-infer-binary": binary_infer_seed()}


def check(data: bytes) -> None:
    """Raise (AssertionError or the unexpected exception) when ``data`` finds a bug."""
    document = _refused_or(decode_json, data)
    if document is not _REFUSED:
        _assert_bounded_and_encodable(document)
        if isinstance(document, dict) and "data" in document:
            normalized = _refused_or(normalize_texts, document["data"])
            if normalized is not _REFUSED:
                assert all(isinstance(text, str) for text in normalized[0])
    _check_infer(data, None)
    header_length, newline, body = data.partition(b"\n")
    if newline:
        _check_infer(body, header_length.decode("latin-1"))


def _refused_or(function: Any, *args: Any) -> Any:
    """``function(*args)``, or ``_REFUSED`` when it refuses with an input error whose message encodes."""
    try:
        return function(*args)
    except REFUSALS as exc:
        message = str(exc)
        assert message and message.encode("utf-8"), repr(exc)
        return _REFUSED


def _check_infer(body: bytes, header_length: str | None) -> None:
    parsed = _refused_or(parse_infer_request, body, header_length)
    if parsed is _REFUSED:
        return
    assert parsed.texts and all(isinstance(text, str) for text in parsed.texts)
    expected = 1
    for dimension in parsed.shape:
        expected *= dimension
    assert expected == len(parsed.texts), (parsed.shape, len(parsed.texts))
    payload, headers = encode_infer_response("fuzz", "1", parsed, parsed.texts)
    header = payload[: int(headers.get("Inference-Header-Content-Length", len(payload)))]
    assert json.loads(header)["outputs"][0]["shape"] == parsed.shape


def _assert_bounded_and_encodable(document: Any) -> None:
    """What ``decode_json`` promises: within the limits, and JSON that encodes back to UTF-8."""
    json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (list, dict)):
            assert depth <= MAX_JSON_DEPTH, depth
            pending.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
        elif isinstance(value, int) and not isinstance(value, bool):
            assert len(str(abs(value))) <= MAX_NUMBER_DIGITS
