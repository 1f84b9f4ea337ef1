"""Models managed at run time: the OIP model-repository routes, behind the admin token.

Real registries over the tiny models and the steerable ``echo`` plugin (``block`` holds the
inference thread), driven through Flask's test client; the live-server swap under load is in
test_model_swap_live.py.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import echo_plugin
import pytest
from test_app_errors import wait_for
from versions import relabelled_copy

from modeldeploy.config import parse_config
from modeldeploy.errors import BatcherRetiredError, ConfigError

TOKEN = "s3cret-admin-token-of-32-chars!!"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ECHO = {"models": {"echo": {}}, "serve": ["echo"], "server": {"admin_token": TOKEN}}


def served(tiny_models: dict[str, Path], *names: str, token: str = TOKEN) -> dict:
    return {"models": {n: {"source": str(tiny_models[n])} for n in names}, "serve": list(names),
            "server": {"admin_token": token} if token else {}}


def predict(client, name: str, data="I love it"):
    return client.post("/predict", json={"model_name": name, "data": data})


# --------------------------------------------------------------------------- the token
def test_without_a_token_configured_the_routes_are_403_and_say_how_to_enable_them(app_for, tiny_models):
    client, _ = app_for(served(tiny_models, "sentiment", token=""))
    for path in ("/v2/repository/index", "/v2/repository/models/sentiment/load",
                 "/v2/repository/models/sentiment/unload"):
        answer = client.post(path, headers=AUTH)
        assert answer.status_code == 403
        assert "server.admin_token" in answer.json["error"]
    assert predict(client, "sentiment").status_code == 200  # everything else stays open
    assert "model_repository" not in client.get("/v2").json["extensions"]


WRONG_AUTHORIZATIONS = [None, "Bearer", "Bearer ", "Basic " + TOKEN, "Bearer " + TOKEN[:-1],
                        "Bearer " + TOKEN + "x", "Bearer " + "é" * 32, "bearer" + TOKEN]


def test_a_missing_or_wrong_token_is_401_and_changes_nothing(app_for, tiny_models):
    client, registry = app_for(served(tiny_models, "sentiment"))
    for header in WRONG_AUTHORIZATIONS:
        headers = {"Authorization": header} if header is not None else {}
        answer = client.post("/v2/repository/models/sentiment/unload", headers=headers)
        assert answer.status_code == 401, header
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert "admin token" in answer.json["error"]
    assert registry.status("sentiment").state == "ready"
    assert client.post("/v2/repository/models/sentiment/unload",
                       headers={"Authorization": "bearer " + TOKEN}).status_code == 200  # the scheme is case-blind


def test_the_token_is_never_shown(app_for, tiny_models):
    client, registry = app_for(served(tiny_models, "sentiment"))
    assert TOKEN not in repr(registry.config)
    for path in ("/models", "/v2", "/-/plugins.json", "/health/ready", "/openapi.json"):
        assert TOKEN not in client.get(path).get_data(as_text=True)


@pytest.mark.parametrize("token, message", [("short", "at least 16 characters"),
                                            ("has a space in it, long enough", "without spaces")])
def test_a_weak_or_malformed_token_is_a_config_error(token, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"server": {"admin_token": token}})


# --------------------------------------------------------------------------- index
def test_the_index_lists_every_installed_model_with_its_state(app_for, tiny_models):
    client, _ = app_for(served(tiny_models, "sentiment", "ner"))
    assert client.post("/v2/repository/models/ner/unload", headers=AUTH).status_code == 200
    rows = {row["name"]: row for row in client.post("/v2/repository/index", headers=AUTH).json}
    assert {"sentiment", "ner", "summarization", "embeddings"} <= set(rows)
    assert rows["sentiment"] == {"name": "sentiment", "version": "1", "state": "READY", "reason": ""}
    assert rows["ner"]["state"] == "UNAVAILABLE" and "unloaded" in rows["ner"]["reason"]
    assert rows["summarization"]["reason"] == "installed, not loaded"
    ready = client.post("/v2/repository/index", headers=AUTH, json={"ready": True}).json
    assert [row["name"] for row in ready] == ["sentiment"]


# --------------------------------------------------------------------------- load and unload
def test_unload_then_load_takes_a_model_out_and_back(app_for, tiny_models):
    client, registry = app_for(served(tiny_models, "sentiment", "ner"))
    assert client.post("/v2/repository/models/sentiment/unload", headers=AUTH).json["state"] == "UNAVAILABLE"
    refused = predict(client, "sentiment")
    assert refused.status_code == 503 and "unloaded by an operator" in refused.json["error"]["message"]
    assert client.get("/v2/models/sentiment/ready").status_code == 503
    # taken out on purpose: the server as a whole stays ready, and the other model serves
    assert client.get("/health/ready").status_code == 200
    assert predict(client, "ner", "Angela Merkel").status_code == 200
    assert client.post("/v2/repository/models/sentiment/unload", headers=AUTH).status_code == 200  # idempotent
    loaded = client.post("/v2/repository/models/sentiment/load", headers=AUTH)
    assert loaded.status_code == 200 and loaded.json["state"] == "READY"
    assert predict(client, "sentiment").status_code == 200
    assert registry.status("sentiment").state == "ready"


def test_load_serves_an_installed_model_the_config_left_out(app_for, tiny_models):
    client, _ = app_for(served(tiny_models, "sentiment"))
    assert predict(client, "ner").status_code == 404
    answer = client.post("/v2/repository/models/ner/load", headers=AUTH,
                         json={"parameters": {"source": str(tiny_models["ner"])}})
    assert answer.status_code == 200, answer.json
    assert predict(client, "ner", "Angela Merkel met Macron").status_code == 200
    assert "ner" in [m["name"] for m in client.get("/models").json["models"]]
    assert client.get("/models").json["models"][-1]["source"] == str(tiny_models["ner"])


def test_a_model_added_at_run_time_is_announced_once_a_reload_is_not(app_for, tiny_models):
    client, registry = app_for(served(tiny_models, "sentiment"))
    announced: list[list[str]] = []
    registry.when_served_changes(announced.append)  # what the HTTP server sizes its pool from
    assert client.post("/v2/repository/models/ner/load", headers=AUTH,
                       json={"parameters": {"source": str(tiny_models["ner"])}}).status_code == 200
    assert client.post("/v2/repository/models/sentiment/load", headers=AUTH).status_code == 200
    assert client.post("/v2/repository/models/ner/unload", headers=AUTH).status_code == 200
    assert announced == [["sentiment", "ner"]]


def test_a_new_source_swaps_the_version_in(app_for, tiny_models, tmp_path):
    renamed = relabelled_copy(tiny_models["sentiment"], tmp_path / "v2", ["BAD", "GOOD"])
    client, _ = app_for(served(tiny_models, "sentiment"))
    assert predict(client, "sentiment").json["body"]["label"] == "POSITIVE"
    answer = client.post("/v2/repository/models/sentiment/load", headers=AUTH,
                         json={"parameters": {"source": str(renamed)}})
    assert answer.status_code == 200 and answer.json["source"] == str(renamed)
    assert predict(client, "sentiment").json["body"]["label"] == "GOOD"
    assert client.get("/models").json["models"][0]["source"] == str(renamed)


def test_tritons_config_parameter_carries_the_source_too(app_for, tiny_models, tmp_path):
    renamed = relabelled_copy(tiny_models["sentiment"], tmp_path / "v2", ["BAD", "GOOD"])
    client, _ = app_for(served(tiny_models, "sentiment"))
    config = json.dumps({"source": str(renamed)})
    assert client.post("/v2/repository/models/sentiment/load", headers=AUTH,
                       json={"parameters": {"config": config}}).status_code == 200
    assert predict(client, "sentiment").json["body"]["label"] == "GOOD"


def test_a_failed_load_keeps_the_serving_version_and_says_why(app_for, tiny_models, tmp_path):
    client, registry = app_for(served(tiny_models, "sentiment"))
    answer = client.post("/v2/repository/models/sentiment/load", headers=AUTH,
                         json={"parameters": {"source": str(tmp_path / "missing")}})
    assert answer.status_code == 400
    assert "folder does not exist" in answer.json["error"]
    assert "the version serving before keeps serving" in answer.json["error"]
    assert predict(client, "sentiment").status_code == 200
    assert registry.model("sentiment").source == str(tiny_models["sentiment"])


def test_a_failed_load_of_an_unloaded_model_shows_as_failed_never_as_demo_weights(app_for, tiny_models, tmp_path):
    document = {**served(tiny_models, "sentiment"), "demo_fallback": True}
    client, registry = app_for(document)
    client.post("/v2/repository/models/sentiment/unload", headers=AUTH)
    answer = client.post("/v2/repository/models/sentiment/load", headers=AUTH,
                         json={"parameters": {"source": str(tmp_path / "missing")}})
    assert answer.status_code == 400 and "the model does not serve" in answer.json["error"]
    status = registry.status("sentiment")
    assert status.state == "failed" and status.demo is None and "folder does not exist" in status.reason


MALFORMED_LOADS = [
    ([1], "must be a JSON object"),
    ({"parameters": []}, "'parameters' must be an object"),
    ({"parameters": {"file:1/model.onnx": "AAAA"}}, "unknown load parameter"),
    ({"parameters": {"source": ""}}, "non-empty string"),
    ({"parameters": {"source": 3}}, "non-empty string"),
    ({"parameters": {"source": "x" * 5000}}, "at most 4096"),
    ({"parameters": {"sha256": "ab" * 32}}, "give the source too"),
    ({"parameters": {"source": "./m.dill", "sha256": "xyz"}}, "64 hexadecimal"),
    ({"parameters": {"config": "{not json"}}, "not valid JSON"),
    ({"parameters": {"config": '{"source": "a", "max_batch_size": 8}'}}, "only 'source' and 'sha256'"),
]


def test_malformed_load_requests_are_400_and_change_nothing(app_for, tiny_models):
    client, registry = app_for(served(tiny_models, "sentiment"))
    batcher = registry.model("sentiment").batcher
    for body, message in MALFORMED_LOADS:
        answer = client.post("/v2/repository/models/sentiment/load", headers=AUTH, json=body)
        assert answer.status_code == 400 and message in answer.json["error"], body
    assert client.post("/v2/repository/models/sentiment/load", headers=AUTH, data=b"\xff\xfe").status_code == 400
    assert registry.model("sentiment").batcher is batcher and registry.status("sentiment").state == "ready"


def test_unknown_models_are_404_listing_the_installed_ones(app_for, tiny_models):
    client, _ = app_for(served(tiny_models, "sentiment"))
    for action in ("load", "unload"):
        answer = client.post(f"/v2/repository/models/nosuch/{action}", headers=AUTH)
        assert answer.status_code == 404 and "sentiment" in answer.json["error"]


def test_an_unload_answers_what_the_model_had_accepted(echo, app_for):
    client, registry = app_for(ECHO)
    with ThreadPoolExecutor(4) as pool:
        blocked = pool.submit(predict, client, "echo", "block")
        assert echo_plugin.BLOCKED.wait(30)
        queued = pool.submit(predict, client, "echo", "queued")
        wait_for(lambda: registry.model("echo").batcher._queue)
        unload = pool.submit(client.post, "/v2/repository/models/echo/unload", headers=AUTH)
        wait_for(lambda: registry.status("echo").state == "unloaded")
        assert predict(client, "echo", "late").status_code == 503  # new work is refused at once
        assert not unload.done()  # the unload waits for what was accepted
        echo_plugin.RELEASE.set()
        assert blocked.result().status_code == 200 and queued.result().json["body"] == {"length": 6}
        assert unload.result().status_code == 200


def test_a_request_that_reaches_a_retired_version_goes_on_to_the_new_one(echo, app_for, monkeypatch):
    client, registry = app_for(ECHO)
    model = registry.model("echo")
    old = model.batcher
    assert client.post("/v2/repository/models/echo/load", headers=AUTH).status_code == 200
    assert model.batcher is not old
    wait_for(lambda: old._thread is not None and not old._thread.is_alive())
    with pytest.raises(BatcherRetiredError):
        old.submit(["x"])
    # the race: a request looked the old version up just before the swap, and submits after it
    looked_up = iter([old])
    real_lookup = model.ready_batcher
    monkeypatch.setattr(model, "ready_batcher", lambda: next(looked_up, None) or real_lookup())
    assert model.predict_texts(["abc"]) == [{"length": 3}]
