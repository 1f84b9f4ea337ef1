"""The JSON API through Flask's test client, over a real registry of tiny models."""

from __future__ import annotations

import json

import pytest


def post(client, body, method="POST", **kwargs):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.open("/predict", method=method, data=data, **kwargs)


def test_predict_one_text_returns_one_label_and_score(client):
    response = post(client, {"model_name": "sentiment", "data": "I love it"})
    assert response.status_code == 200
    assert response.json["model_name"] == "sentiment"
    result = response.json["body"]
    assert result["label"] in {"POSITIVE", "NEGATIVE"} and 0 <= result["score"] <= 1


def test_get_with_json_body_and_no_content_type_is_accepted(client):
    response = post(client, {"model_name": "sentiment", "data": ["good", "bad"]}, method="GET")
    assert response.status_code == 200, response.json
    assert len(response.json["body"]) == 2


def test_a_list_gives_one_result_per_text_in_order(client):
    texts = ["Angela Merkel met Emmanuel Macron in Paris.", "", "Apple opened an office in London."]
    response = post(client, {"model_name": "ner", "data": texts}, content_type="application/json")
    assert response.status_code == 200
    body = response.json["body"]
    assert [type(item) for item in body] == [list, list, list]
    assert body[1] == []
    for text, entities in zip(texts, body):
        for entity in entities:
            assert text[entity["start"]:entity["end"]] == entity["word"]


def test_summarization_returns_text(client):
    response = post(client, {"model_name": "summarization", "data": "The council approved the park plan."})
    assert response.status_code == 200
    assert isinstance(response.json["body"]["summary_text"], str)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "request body is empty"),
        (b"   \n", "request body is empty"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (["sentiment", "hi"], "must be a JSON object, got an array"),
        ({"data": "hi"}, "missing field 'model_name'"),
        ({"model_name": 3, "data": "hi"}, "field 'model_name' must be a string, got a number"),
        ({"model_name": "sentiment"}, "missing field 'data'"),
        ({"model_name": "sentiment", "data": 42}, "data must be a string or a list of strings, got int"),
        ({"model_name": "sentiment", "data": None}, "got None"),
        ({"model_name": "sentiment", "data": []}, "non-empty list"),
        ({"model_name": "sentiment", "data": ["ok", 7]}, "data[1] must be a string, got int"),
        ({"model_name": "sentiment", "data": [["nested"]]}, "nested lists are not accepted"),
    ],
)
def test_bad_requests_are_400_with_the_reason(client, body, message):
    response = post(client, body)
    assert response.status_code == 400
    error = response.json["error"]
    assert error["status"] == 400
    assert message in error["message"]


def test_unknown_model_is_404_listing_the_available_ones(client, tiny_models):
    response = post(client, {"model_name": "klingon", "data": "hi"})
    assert response.status_code == 404
    error = response.json["error"]
    assert "klingon" in error["message"]
    assert error["available"] == sorted(tiny_models)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_with_allow_header(client, method):
    response = post(client, {"model_name": "sentiment", "data": "hi"}, method=method)
    assert response.status_code == 405
    assert response.json["error"]["status"] == 405
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_unknown_route_is_json_404(client):
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json["error"]["status"] == 404


def test_models_describes_every_served_model(client, tiny_models):
    models = {m["name"]: m for m in client.get("/models").json["models"]}
    assert sorted(models) == sorted(tiny_models)
    sentiment = models["sentiment"]
    assert sentiment["task"] == "text-classification"
    assert sentiment["description"]
    assert sentiment["plugin"] == {"distribution": "modeldeploy-sentiment", "version": "0.1.0"}
    assert sentiment["source"] == str(tiny_models["sentiment"])
    assert sentiment["device"] == "cpu"
    assert (sentiment["precision"], sentiment["runtime"]) == ("fp32", "torch")
    assert sentiment["status"]["state"] == "ready" and sentiment["status"]["reason"] is None
    assert sentiment["example"]


def test_a_model_configured_in_another_precision_and_runtime_serves_and_says_so(app_for, tiny_models):
    config = {"serve": ["sentiment", "ner"], "models": {
        "sentiment": {"source": str(tiny_models["sentiment"]), "device": "cpu", "settings": {"precision": "bf16"}},
        "ner": {"source": str(tiny_models["ner"]), "device": "cpu", "settings": {"runtime": "onnxruntime"}}}}
    client, _ = app_for(config)
    models = {m["name"]: m for m in client.get("/models").json["models"]}
    assert (models["sentiment"]["precision"], models["sentiment"]["runtime"]) == ("bf16", "torch")
    assert (models["ner"]["precision"], models["ner"]["runtime"]) == ("fp32", "onnxruntime")
    answer = client.post("/predict", json={"model_name": "sentiment", "data": ["good", "bad and sad"]})
    assert answer.status_code == 200 and len(answer.json["body"]) == 2
    answer = client.post("/predict", json={"model_name": "ner", "data": "Alice lives in Paris."})
    assert answer.status_code == 200 and isinstance(answer.json["body"], list)


def test_health_live_and_ready(client):
    assert client.get("/health/live").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json["status"] == "ready"
    assert ready.json["not_ready"] == {}
    assert set(ready.json["models"].values()) == {"ready"}


def test_homepage_has_a_card_per_model_with_its_example(client, tiny_registry):
    page = client.get("/").get_data(as_text=True)
    for name in tiny_registry.names:
        entry = tiny_registry.entry(name)
        assert f'data-model="{name}"' in page
        assert entry.wrapper_class.description in page
    assert "Angela Merkel met Emmanuel Macron" in page  # the NER example, prefilled
    assert "modeldeploy-ner" in page


def test_homepage_is_self_contained(client):
    page = client.get("/").get_data(as_text=True)
    assert "http://" not in page and "https://" not in page and "//" not in page.replace("://", "")
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page
        response = client.get(asset)
        assert response.status_code == 200
        assert b"http" not in response.data  # no CDN, no web fonts


def test_a_text_too_long_to_translate_is_400_naming_the_setting(client):
    response = post(client, {"model_name": "translation", "data": ["fine", "x" * 20_001]})
    assert response.status_code == 400
    assert "20001 characters is over the 20000" in response.json["error"]["message"]
    assert "max_characters" in response.json["error"]["message"]
