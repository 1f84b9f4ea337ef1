"""One request, one validation, one preparation per item; app state kept on the app."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from flask import Flask

from modeldeploy import ModelWrapper, batching, inputs, registry, wrapper
from modeldeploy.app import create_app, errors, json_api
from modeldeploy.config import parse_config
from modeldeploy.plugins import Catalog, ModelEntry
from modeldeploy.registry import Registry


class CountingWrapper(ModelWrapper):
    """A weightless model that counts how often each text is prepared and what it is given."""

    name = "counting"
    task = "counting"
    default_source = "nowhere"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prepared: Counter[str] = Counter()
        self.seen: list[str] = []
        self._counting = threading.Lock()

    def load(self, source: str, device: str) -> None:
        self.model = "counting"

    def prepare_data(self, item: str) -> str:
        with self._counting:
            self.prepared[item] += 1
        return f"<{item}>"

    def predict_batch(self, items: list[str]) -> list[Any]:
        self.seen.extend(items)
        return [{"text": item} for item in items]


@pytest.fixture
def counting_registry():
    catalog = Catalog(models={"counting": ModelEntry(CountingWrapper, plugin="test")})
    served = Registry(parse_config({"models": {"counting": {}}}), catalog)
    served.start(background=False)
    model = served.wrapper("counting")
    model.prepared.clear()  # forget the cost calibration's own runs
    model.seen.clear()
    yield served
    served.close()


@pytest.fixture
def validations(monkeypatch) -> Counter[str]:
    """How often ``normalize_texts`` runs, wherever it is called from."""
    calls: Counter[str] = Counter()
    real = inputs.normalize_texts

    def counted(data: Any) -> Any:
        calls["normalize_texts"] += 1
        return real(data)

    for module in (json_api, registry, batching, wrapper):
        monkeypatch.setattr(module, "normalize_texts", counted)
    return calls


def test_predict_validates_once_and_prepares_each_item_once(counting_registry, validations):
    client = create_app(registry=counting_registry).test_client()
    response = client.post("/predict", json={"model_name": "counting", "data": ["a", "bb", "ccc"]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["body"] == [{"text": "<a>"}, {"text": "<bb>"}, {"text": "<ccc>"}]
    model = counting_registry.wrapper("counting")
    assert model.prepared == Counter({"a": 1, "bb": 1, "ccc": 1})
    assert sorted(model.seen) == ["<a>", "<bb>", "<ccc>"]  # the batcher ran what the HTTP thread prepared
    assert validations["normalize_texts"] == 1


def test_oip_infer_prepares_each_item_once(counting_registry):
    client = create_app(registry=counting_registry).test_client()
    body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["x", "yy"]}]}
    response = client.post("/v2/models/counting/infer", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert counting_registry.wrapper("counting").prepared == Counter({"x": 1, "yy": 1})


def test_python_paths_prepare_each_item_once(counting_registry, validations):
    model = CountingWrapper().ensure_loaded()
    assert model.predict(["a", "bb", "a"]) == [{"text": "<a>"}, {"text": "<bb>"}, {"text": "<a>"}]
    assert model.prepared == Counter({"a": 2, "bb": 1}) and validations["normalize_texts"] == 1
    assert counting_registry.predict("counting", ["p", "q"]) == [{"text": "<p>"}, {"text": "<q>"}]
    assert counting_registry.wrapper("counting").prepared == Counter({"p": 1, "q": 1})
    assert validations["normalize_texts"] == 2


def test_error_bodies_belong_to_the_app_that_chose_them(counting_registry):
    """The OIP blueprint's ``{"error": "..."}`` body under /v2 is set on its app only."""
    served = create_app(registry=counting_registry).test_client()
    assert served.get("/v2/nothing-here").get_json() == {"error": served.get("/v2/nothing-here").get_json()["error"]}
    plain = Flask("plain")
    errors.register(plain)
    missing = plain.test_client().get("/v2/nothing-here")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["status"] == 404  # the default body, not the protocol's


def test_create_app_refuses_a_config_beside_a_registry(counting_registry):
    with pytest.raises(TypeError, match="not both"):
        create_app(parse_config({}), registry=counting_registry)
