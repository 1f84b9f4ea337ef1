"""The Open Inference Protocol, driven by the real Triton client against the real server process.

``tritonclient`` sends no Content-Type and, by default, binary tensors both ways; both the
default and the JSON-only (``binary_data=False``) modes are exercised. Results must equal what
``/predict`` returns for the same texts: both paths go through the same registry and batcher.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from live_server import LiveServer
from tritonclient.utils import InferenceServerException

MODELS = ("ner", "sentiment", "summarization")
ONE_TEXT = ["Angela Merkel met Emmanuel Macron in Paris."]
SEVERAL_TEXTS = [
    "I love this movie, the acting was wonderful.",
    "This was a terrible waste of time and money.",
    "Apple and Microsoft opened new offices in London and Berlin.",
]


@pytest.fixture(scope="module")
def client(ecosystem_server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=ecosystem_server.url.removeprefix("http://"), network_timeout=120)
    yield client
    client.close()


def infer(client: triton.InferenceServerClient, model: str, texts: list[str], *, binary: bool,
          version: str = "", request_id: str = "") -> tuple[list[Any], triton.InferResult]:
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_), binary_data=binary)
    # Without `outputs` the client asks for binary results; with binary=False, ask for JSON ones.
    outputs = None if binary else [triton.InferRequestedOutput("result", binary_data=False)]
    result = client.infer(model, [tensor], outputs=outputs, model_version=version, request_id=request_id)
    return [json.loads(element) for element in result.as_numpy("result")], result


def predict(server: LiveServer, model: str, texts: list[str]) -> list[Any]:
    response = server.request("POST", "/predict", json={"model_name": model, "data": texts})
    assert response.status == 200, response.text
    return response.json()["body"]


def test_server_is_live_and_ready(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()


def test_server_metadata_names_the_binary_extension(client: triton.InferenceServerClient) -> None:
    metadata = client.get_server_metadata()
    assert metadata["name"] == "modeldeploy"
    assert "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize("model", MODELS)
def test_model_ready_and_metadata(client: triton.InferenceServerClient, model: str) -> None:
    assert client.is_model_ready(model)
    assert client.is_model_ready(model, "1")
    metadata = client.get_model_metadata(model)
    assert metadata["name"] == model
    assert metadata["versions"] == ["1"]
    assert metadata["platform"].startswith("modeldeploy/")
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [{"name": "result", "datatype": "BYTES", "shape": [-1]}]
    assert client.get_model_metadata(model, "1") == metadata


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("texts", [ONE_TEXT, SEVERAL_TEXTS], ids=["one", "several"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_matches_predict(client: triton.InferenceServerClient, ecosystem_server: LiveServer,
                               model: str, texts: list[str], binary: bool) -> None:
    results, raw = infer(client, model, texts, binary=binary, request_id="triton-42")
    assert results == predict(ecosystem_server, model, texts)
    response = raw.get_response()
    assert response["model_name"] == model and response["model_version"] == "1"
    assert response["id"] == "triton-42"
    assert response["outputs"][0]["shape"] == [len(texts)]


def test_embeddings_metadata_names_an_fp32_vector_output(client: triton.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("embeddings")
    assert metadata["platform"] == "modeldeploy/feature-extraction"
    assert metadata["outputs"] == [{"name": "result", "datatype": "FP32", "shape": [-1, 32]}]  # the tiny encoder


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_embeddings_come_back_as_an_fp32_tensor_equal_to_predict(client: triton.InferenceServerClient,
                                                                 ecosystem_server: LiveServer, binary: bool) -> None:
    tensor = triton.InferInput("text", [len(SEVERAL_TEXTS)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in SEVERAL_TEXTS], dtype=np.object_), binary_data=binary)
    outputs = None if binary else [triton.InferRequestedOutput("result", binary_data=False)]
    result = client.infer("embeddings", [tensor], outputs=outputs)
    vectors = result.as_numpy("result")
    assert vectors.dtype == np.float32 and vectors.shape == (3, 32)
    assert result.get_output("result")["datatype"] == "FP32"
    expected = np.array(predict(ecosystem_server, "embeddings", SEVERAL_TEXTS), dtype=np.float32)
    assert np.allclose(vectors, expected, atol=1e-6)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_two_dimensional_input_gives_a_three_dimensional_fp32_tensor(client: triton.InferenceServerClient) -> None:
    texts = np.array([[b"a", b"b", b"c"], [b"d", b"e", b"f"]], dtype=np.object_)
    tensor = triton.InferInput("text", [2, 3], "BYTES")
    tensor.set_data_from_numpy(texts)
    vectors = client.infer("embeddings", [tensor]).as_numpy("result")
    assert vectors.shape == (2, 3, 32)
    flat = client.infer("embeddings", [_texts_tensor([t.decode() for t in texts.ravel()])]).as_numpy("result")
    assert np.allclose(vectors.reshape(6, 32), flat, atol=1e-6)  # row-major, element by element


def _texts_tensor(texts: list[str]) -> triton.InferInput:
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    return tensor


def test_infer_on_the_explicit_version(client: triton.InferenceServerClient) -> None:
    results, _ = infer(client, "sentiment", SEVERAL_TEXTS, binary=True, version="1")
    assert [r["label"] for r in results] == ["POSITIVE", "NEGATIVE", results[2]["label"]]


def test_unicode_texts_survive_both_encodings(client: triton.InferenceServerClient) -> None:
    texts = ["Günther bought a café in Zürich — 5€", "東京"]
    assert infer(client, "sentiment", texts, binary=True)[0] == infer(client, "sentiment", texts, binary=False)[0]


def error_of(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_unknown_model_and_version_are_404(client: triton.InferenceServerClient) -> None:
    assert not client.is_model_ready("no-such-model")
    error = error_of(lambda: client.get_model_metadata("no-such-model"))
    assert error.status() == "404" and "unknown model 'no-such-model'" in error.message()
    error = error_of(lambda: client.get_model_metadata("sentiment", "7"))
    assert error.status() == "404" and "no version '7'" in error.message()
    error = error_of(lambda: infer(client, "sentiment", ONE_TEXT, binary=True, version="7"))
    assert error.status() == "404"


def test_wrong_input_name_and_datatype_are_400(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("input_ids", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"hi"], dtype=np.object_))
    error = error_of(lambda: client.infer("sentiment", [tensor]))
    assert error.status() == "400" and "unknown input 'input_ids'" in error.message()
    tensor = triton.InferInput("text", [2], "INT32")
    tensor.set_data_from_numpy(np.array([1, 2], dtype=np.int32), binary_data=False)
    error = error_of(lambda: client.infer("sentiment", [tensor]))
    assert error.status() == "400" and "datatype 'INT32'" in error.message()


def test_unknown_output_is_400(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("text", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"hi"], dtype=np.object_))
    error = error_of(lambda: client.infer("sentiment", [tensor], outputs=[triton.InferRequestedOutput("logits")]))
    assert error.status() == "400" and "unknown output 'logits'" in error.message()


def test_too_many_texts_is_413(client: triton.InferenceServerClient) -> None:
    error = error_of(lambda: infer(client, "sentiment", ["hi"] * 17, binary=True))  # server.max_items is 16
    assert error.status() == "413" and "at most 16" in error.message()
