"""The ``precision`` and ``runtime`` settings: refused where they cannot work, converted after any
plugin's load, and close to fp32 on a real model's outputs (the packaged all-MiniLM-L6-v2)."""

from __future__ import annotations

import statistics

import dill
import pytest
import torch

import modeldeploy
from modeldeploy import runtimes
from modeldeploy.errors import ConfigError, ModelLoadError, StoreError
from modeldeploy.loading import load_artifact
from modeldeploy.plugins import get_catalog
from modeldeploy.runtimes.onnx import OnnxRuntimeModel
from modeldeploy.store import export_artifact
from modeldeploy.testing import CORPUS

SENTENCES = list(CORPUS[:24])


def wrapper_class(name: str) -> type:
    return get_catalog().models[name].wrapper_class


@pytest.mark.parametrize(("settings", "message"), [
    ({"precision": "int4"}, r"setting 'precision' of model 'sentiment' must be one of fp32, fp16, bf16, int8, got 'int4'"),
    ({"precision": 16}, r"setting 'precision' of model 'sentiment' must be str, got int"),
    ({"runtime": "tensorrt"}, r"setting 'runtime' of model 'sentiment' must be one of torch, onnxruntime, got 'tensorrt'"),
    ({"runtime": "onnxruntime", "precision": "bf16"}, r"runtime 'onnxruntime' runs precision fp32 or int8, not 'bf16'"),
])
def test_a_bad_precision_or_runtime_is_a_config_error_naming_the_choices(settings, message) -> None:
    with pytest.raises(ConfigError, match=message):
        wrapper_class("sentiment").resolve_settings(settings)


def test_generation_stays_on_torch_and_says_why() -> None:
    with pytest.raises(ConfigError, match=r"model 'summarization' cannot use runtime 'onnxruntime'.*generate\(\)"):
        wrapper_class("summarization").resolve_settings({"runtime": "onnxruntime"})
    assert wrapper_class("summarization").resolve_settings({"precision": "bf16"})["precision"] == "bf16"


@pytest.mark.parametrize(("precision", "runtime", "device", "refused"), [
    ("int8", "torch", "cuda", "runs on the CPU only"),
    ("fp32", "onnxruntime", "cuda:0", "runs on the CPU here"),
    ("int8", "onnxruntime", "mps", "runs on the CPU only"),
    ("bf16", "torch", "cuda", None),
    ("fp16", "torch", "cpu", None),
    ("int8", "torch", "cpu", None),
])
def test_the_device_is_checked_before_any_weights_are_read(precision, runtime, device, refused) -> None:
    if refused is None:
        runtimes.check_device("m", precision, runtime, device)
    else:
        with pytest.raises(ModelLoadError, match=refused):
            runtimes.check_device("m", precision, runtime, device)


def test_a_config_with_a_bad_precision_is_refused_at_parse_time(tiny_models) -> None:
    from modeldeploy.config import parse_config

    with pytest.raises(ConfigError, match=r"setting 'precision' of model 'sentiment' must be one of"):
        parse_config({"models": {"sentiment": {"source": str(tiny_models["sentiment"]),
                                               "settings": {"precision": "half"}}}},
                     available={"sentiment": wrapper_class("sentiment")})


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_half_precisions_cast_the_weights_and_still_answer(tiny_models, precision, dtype) -> None:
    wrapper = modeldeploy.load("sentiment", str(tiny_models["sentiment"]), device="cpu",
                               settings={"precision": precision})
    assert {parameter.dtype for parameter in wrapper.model.parameters()} == {dtype}
    results = wrapper.predict(SENTENCES[:4])
    labels = set(wrapper.model.config.id2label.values())
    assert all(result["label"] in labels and 0.0 <= result["score"] <= 1.0 for result in results)


def test_int8_quantizes_every_linear_layer(tiny_models) -> None:
    wrapper = modeldeploy.load("sentiment", str(tiny_models["sentiment"]), device="cpu", settings={"precision": "int8"})
    kinds = {type(module) for module in wrapper.model.modules()}
    assert torch.nn.Linear not in kinds
    assert torch.ao.nn.quantized.dynamic.Linear in kinds
    assert len(wrapper.predict(SENTENCES[:3])) == 3


def test_onnxruntime_gives_torch_answers_for_classification(tiny_models) -> None:
    source = str(tiny_models["sentiment"])
    reference = modeldeploy.load("sentiment", source, device="cpu").predict(SENTENCES)
    wrapper = modeldeploy.load("sentiment", source, device="cpu", settings={"runtime": "onnxruntime"})
    assert isinstance(wrapper.model, OnnxRuntimeModel)
    results = wrapper.predict(SENTENCES)  # batches of several lengths: both axes are dynamic
    assert [r["label"] for r in results] == [r["label"] for r in reference]
    assert [r["score"] for r in results] == pytest.approx([r["score"] for r in reference], abs=1e-5)
    # the graph travels inside a dill artifact and its session is rebuilt on the other side
    assert dill.loads(dill.dumps(wrapper)).predict(SENTENCES[:5]) == results[:5]


def test_onnxruntime_gives_torch_entities_over_long_texts(tiny_models) -> None:
    """NER reads long texts in overlapping windows: more windows than texts in one graph call."""
    source = str(tiny_models["ner"])
    texts = [" ".join(SENTENCES), SENTENCES[0]]
    reference = modeldeploy.load("ner", source, device="cpu").predict(texts)
    results = modeldeploy.load("ner", source, device="cpu", settings={"runtime": "onnxruntime"}).predict(texts)
    spans = [[(e["entity_group"], e["start"], e["end"]) for e in entities] for entities in results]
    assert spans == [[(e["entity_group"], e["start"], e["end"]) for e in entities] for entities in reference]
    assert sum(len(entities) for entities in reference) > 0


def test_summarization_generates_in_bf16(tiny_models) -> None:
    wrapper = modeldeploy.load("summarization", str(tiny_models["summarization"]), device="cpu",
                               settings={"precision": "bf16"})
    assert next(wrapper.model.parameters()).dtype == torch.bfloat16
    assert all(isinstance(r["summary_text"], str) for r in wrapper.predict(SENTENCES[:2]))


def _cosines(settings: dict[str, str]) -> list[float]:
    reference = _real_minilm({})
    vectors = _real_minilm(settings)
    return [float(torch.dot(torch.tensor(a), torch.tensor(b))) for a, b in zip(vectors, reference)]


def _real_minilm(settings: dict[str, str]) -> list[list[float]]:
    return modeldeploy.load("embeddings", device="cpu", settings=settings).predict(SENTENCES)


@pytest.mark.parametrize(("settings", "worst", "median"), [
    ({"precision": "bf16"}, 0.995, 0.999),
    ({"precision": "fp16"}, 0.999, 0.9999),
    ({"runtime": "onnxruntime"}, 0.99999, 0.99999),
    ({"precision": "int8"}, 0.9, 0.96),
    ({"precision": "int8", "runtime": "onnxruntime"}, 0.9, 0.96),
])
def test_real_minilm_vectors_stay_close_to_fp32(settings, worst, median) -> None:
    """Unit vectors of the real all-MiniLM-L6-v2: cosine with fp32's, per sentence (bench/precision.py
    measures the same on the benchmark's texts, with speed)."""
    cosines = _cosines(settings)
    assert min(cosines) >= worst and statistics.median(cosines) >= median, cosines


def test_a_dill_artifact_keeps_the_precision_it_was_exported_with(tiny_models, tmp_path) -> None:
    wrapper = modeldeploy.load("sentiment", str(tiny_models["sentiment"]), device="cpu",
                               settings={"precision": "bf16"})
    path = tmp_path / "sentiment.dill"
    export_artifact(wrapper, path)
    loaded = load_artifact(str(path), cache_dir=tmp_path / "cache", trust_unsigned=True, device="cpu")
    assert loaded.settings["precision"] == "bf16"
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    with pytest.raises(StoreError, match=r"exported with precision 'bf16'.*to serve precision 'fp32', export it again"):
        load_artifact(str(path), cache_dir=tmp_path / "cache", trust_unsigned=True, device="cpu",
                      settings={"precision": "fp32"})


@pytest.mark.parametrize("settings", [{"precision": "int8"}, {"runtime": "onnxruntime"}])
def test_the_pretrained_format_refuses_a_model_without_float_torch_weights(tiny_models, tmp_path, settings) -> None:
    wrapper = modeldeploy.load("sentiment", str(tiny_models["sentiment"]), device="cpu", settings=settings)
    with pytest.raises(StoreError, match=r"the pretrained format cannot hold .*export it as dill"):
        export_artifact(wrapper, tmp_path / "sentiment.pretrained.tar", format="pretrained")
    assert not list(tmp_path.iterdir()), "nothing is written"
