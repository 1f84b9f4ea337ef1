"""``/-/plugins.json`` and plugins installed while the server runs.

The test plugins are really pip-installed (``extra_plugins_path``): ``wordcount`` works,
``broken`` fails to import and ``exits`` calls ``sys.exit(3)`` on import.
"""

from __future__ import annotations

from test_model_repository import AUTH, TOKEN

from modeldeploy import plugins

SENTIMENT_ONLY = {"serve": ["sentiment"], "server": {"admin_token": TOKEN}}


def served(tiny_models):
    return {**SENTIMENT_ONLY, "models": {"sentiment": {"source": str(tiny_models["sentiment"])}}}


def test_plugins_json_lists_plugins_versions_models_and_failures(with_extra_plugins, app_for, tiny_models):
    client, _ = app_for(served(tiny_models))
    answer = client.get("/-/plugins.json")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    body = answer.json
    plugins = {plugin["name"]: plugin for plugin in body["plugins"]}
    assert plugins["wordcount"] == {"name": "wordcount", "distribution": "modeldeploy-wordcount",
                                    "version": "1.2.3", "models": ["wordcount"]}
    assert plugins["sentiment"]["models"] == ["sentiment"]  # installed, whether served or not
    assert plugins["embeddings"]["distribution"] == "modeldeploy-embeddings"
    failed = {failure["name"]: failure for failure in body["failed"]}
    assert failed["broken"]["distribution"] == "modeldeploy-broken"
    assert failed["broken"]["error"].startswith("failed to import:")
    assert "sys.exit(3)" in failed["exits"]["error"]
    assert body["left_out"] == []


def test_plugins_json_shows_what_the_allow_list_left_out(with_extra_plugins, app_for, tiny_models, monkeypatch):
    monkeypatch.setenv("MODELDEPLOY_PLUGINS", "sentiment,modeldeploy-wordcount")
    plugins.get_catalog(refresh=True)  # the server discovers plugins when it starts
    client, _ = app_for(served(tiny_models))
    body = client.get("/-/plugins.json").json
    assert sorted(plugin["name"] for plugin in body["plugins"]) == ["sentiment", "wordcount"]
    assert {"name": "broken", "distribution": "modeldeploy-broken"} in body["left_out"]
    assert body["failed"] == []


def test_a_plugin_installed_after_start_up_is_indexed_and_loaded(extra_plugins_path, app_for, tiny_models,
                                                                 monkeypatch):
    client, _ = app_for(served(tiny_models))
    assert "wordcount" not in [row["name"] for row in client.post("/v2/repository/index", headers=AUTH).json]
    monkeypatch.syspath_prepend(str(extra_plugins_path))  # what `pip install` into site-packages does
    rows = {row["name"]: row for row in client.post("/v2/repository/index", headers=AUTH).json}
    assert rows["wordcount"]["reason"] == "installed, not loaded"
    assert client.post("/v2/repository/models/wordcount/load", headers=AUTH).status_code == 200
    answer = client.post("/predict", json={"model_name": "wordcount", "data": "three little words"})
    assert answer.status_code == 200 and answer.json["body"] == {"words": 3}
    assert "wordcount" in [plugin["name"] for plugin in client.get("/-/plugins.json").json["plugins"]]
