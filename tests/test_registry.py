"""The registry: statuses per model, failures isolated, lazy loading."""

import time
from dataclasses import replace

import pytest

from modeldeploy.config import parse_config
from modeldeploy.errors import ModelNotReadyError, UnknownModelError
from modeldeploy.registry import FAILED, IDLE, READY, Registry


def make_registry(tiny_models, **overrides):
    models = {
        "sentiment": {"source": str(tiny_models["sentiment"])},
        "ner": {"source": str(tiny_models["ner"])},
    }
    models.update(overrides)
    return Registry(parse_config({"models": models, "serve": list(models)}))


def test_eager_models_become_ready_and_predict(tiny_models):
    registry = make_registry(tiny_models)
    assert registry.names == ["ner", "sentiment"]
    assert registry.status("sentiment").state == IDLE
    registry.start(background=False)
    assert registry.status("sentiment").state == READY
    assert registry.status("sentiment").load_seconds > 0
    assert registry.not_ready() == {}
    assert registry.predict("sentiment", "I love it")["label"] in {"POSITIVE", "NEGATIVE"}


def test_a_model_that_cannot_load_fails_alone(tiny_models, tmp_path):
    registry = make_registry(tiny_models, ner={"source": str(tmp_path / "missing")})
    registry.start()
    assert registry.wait_until_loaded(timeout=120)
    status = registry.status("ner")
    assert status.state == FAILED and "could not load model 'ner'" in status.reason
    assert set(registry.not_ready()) == {"ner"}
    with pytest.raises(ModelNotReadyError, match=r"failed to load: .* \(next attempt in \d+ s\)") as info:
        registry.predict("ner", "Paris")
    assert 1 <= info.value.retry_after <= 6  # the next attempt: 5 s by default, give or take its jitter
    assert registry.predict("sentiment", ["a", "b"])[1]["label"] in {"POSITIVE", "NEGATIVE"}
    registry.close()


def test_lazy_model_loads_on_first_use(tiny_models):
    registry = make_registry(tiny_models, ner={"source": str(tiny_models["ner"]), "lazy": True})
    registry.start(background=False)
    assert registry.status("ner").state == IDLE
    with pytest.raises(ModelNotReadyError, match="loading"):
        registry.predict("ner", "Paris")
    for _ in range(600):
        if registry.status("ner").state == READY:
            break
        time.sleep(0.05)
    assert registry.status("ner").state == READY
    assert isinstance(registry.predict("ner", "Paris"), list)


def test_unknown_names_are_refused(tiny_models):
    registry = make_registry(tiny_models)
    with pytest.raises(UnknownModelError, match="available models: ner, sentiment"):
        registry.status("summarization")
    with pytest.raises(UnknownModelError):
        Registry(parse_config({"models": {"ghost": {}}}))


def test_a_ready_model_between_two_versions_asks_to_retry():
    """Ready, but its batcher taken away by an operator's swap or unload a moment ago: a clear 503
    asking to retry, never a crash on the missing batcher."""
    registry = Registry(parse_config({"serve": ["sentiment"]}))
    served = registry.model("sentiment")
    served.set_status(replace(served.status, state=READY))
    with pytest.raises(ModelNotReadyError, match="changing versions; retry shortly") as raised:
        served.ready_batcher()
    assert raised.value.retry_after == 1
