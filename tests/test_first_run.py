"""What a newcomer meets first: demo weights when the hub is out of reach (labelled, and only when
the config asks), fast and clear failures, every installed plugin served, and the rough edges."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import markupsafe
import pytest

import modeldeploy
from modeldeploy import hub, loading
from modeldeploy.app import create_app
from modeldeploy.config import parse_config
from modeldeploy.errors import ModelLoadError
from modeldeploy.registry import FAILED, READY, Registry


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modeldeploy", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, cwd=cwd, timeout=300)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the socket is closed


@pytest.fixture
def unreachable_hub(closed_port, monkeypatch):
    """The hub endpoint is a closed loopback port and offline mode is not set: the probe decides."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    monkeypatch.delenv(hub.OFFLINE_ENV, raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port}", hub.OFFLINE_ENV: "", "TRANSFORMERS_OFFLINE": ""}


def served(document: dict, **extra) -> Registry:
    registry = Registry(parse_config({**document, **extra}))
    registry.start(background=False)
    return registry


# ------------------------------------------------------------------ demo fallback
def test_demo_fallback_serves_a_labelled_demo_model(tmp_path, caplog):
    document = {"serve": ["sentiment"], "demo_fallback": True, "cache_dir": str(tmp_path / "cache"),
                "models": {"sentiment": {"source": "./no-such-folder"}}}
    with caplog.at_level(logging.WARNING, logger="modeldeploy.registry"):
        registry = served(document)
    try:
        status = registry.status("sentiment")
        assert status.state == READY
        assert "could not load model 'sentiment' from './no-such-folder': the folder does not exist" in status.demo
        assert "serves DEMO weights (answers are not meaningful)" in caplog.text
        assert registry.predict("sentiment", "I love it")["label"] in {"POSITIVE", "NEGATIVE"}
        client = create_app(registry=registry).test_client()
        described = client.get("/models").get_json()["models"][0]
        assert described["status"]["demo"] == status.demo and described["source"] == "./no-such-folder"
        page = client.get("/").get_data(as_text=True)
        assert 'data-role="demo-banner">' in page and "demo weights: answers are not meaningful" in page
        assert 'data-role="demo" hidden' not in page
    finally:
        registry.close()


@pytest.mark.parametrize("document, why", [
    ({"models": {"sentiment": {"source": "./no-such-folder"}}}, "the config does not ask for the fallback"),
    ({"demo_fallback": True, "models": {"sentiment": {"source": "no-such-artifact.dill"}}}, "artifacts never fall back"),
])
def test_no_demo_model_unless_asked_and_never_for_an_artifact(document, why, tmp_path):
    registry = served(document, serve=["sentiment"], cache_dir=str(tmp_path / "cache"))
    try:
        status = registry.status("sentiment")
        assert status.state == FAILED, why
        assert status.demo is None and status.fix
        page = create_app(registry=registry).test_client().get("/").get_data(as_text=True)
        assert 'data-role="demo-banner" hidden' in page
        assert '<button type="submit" disabled>Run</button>' in page
        assert f'To fix: <span\n       data-role="fix-text">{markupsafe.escape(status.fix)}' in page
    finally:
        registry.close()


# ------------------------------------------------------------------ fast, clear failures
def test_an_unreachable_hub_fails_fast_with_one_clear_message(unreachable_hub):
    with pytest.raises(ModelLoadError, match="the HuggingFace hub is off") as info:
        modeldeploy.load("sentiment")  # the plugin's default: a hub id
    assert "not in the local HuggingFace cache" in str(info.value)
    assert "local folder" in info.value.fix and "modeldeploy pull" in info.value.fix


def test_the_cli_fails_fast_offline_with_the_fix(unreachable_hub):
    done = cli("predict", "sentiment", "I love it", env=unreachable_hub)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-2].startswith("error: could not load model 'sentiment' from the hub id")
    assert lines[-1].startswith("fix: serve real weights from a local folder")
    assert "Traceback" not in done.stderr


def test_a_missing_folder_is_named_as_such():
    with pytest.raises(ModelLoadError, match="from './models/sentiment': the folder does not exist"):
        loading.load("sentiment", source="./models/sentiment")


# ------------------------------------------------------------------ installed plugins are served
def test_installed_but_not_served_is_a_404_that_says_so(tiny_models):
    registry = served({"serve": ["sentiment"], "models": {"sentiment": {"source": str(tiny_models["sentiment"])}}})
    try:
        response = create_app(registry=registry).test_client().post("/predict", json={"model_name": "ner", "data": "x"})
        assert response.status_code == 404
        error = response.get_json()["error"]
        assert error["message"] == ("model 'ner' is installed but not served here (add it to the config's 'serve' "
                                    "list to serve it); available models: sentiment")
        assert error["available"] == ["sentiment"]
    finally:
        registry.close()


def test_an_allow_list_that_matches_nothing_says_what_is_installed():
    done = cli("list", env={"MODELDEPLOY_PLUGINS": "langdetect"})
    assert done.returncode == 0, done.stderr
    assert "No models: the MODELDEPLOY_PLUGINS allow-list leaves every installed plugin out." in done.stdout
    assert "MODELDEPLOY_PLUGINS names 'langdetect', which match(es) no installed plugin" in done.stdout
    assert "installed but left out by MODELDEPLOY_PLUGINS='langdetect': embeddings (modeldeploy-embeddings), ner (modeldeploy-ner)" in done.stdout


# ------------------------------------------------------------------ rough edges
def test_413_names_the_limit_and_the_setting(tiny_models):
    registry = Registry(parse_config({"serve": ["sentiment"], "server": {"max_body_bytes": 100}}))
    response = create_app(registry=registry).test_client().post("/predict", data="x" * 200)
    assert response.status_code == 413
    assert response.get_json()["error"]["message"].startswith(
        "request body is over 100 bytes, this server's limit (server.max_body_bytes)")


def test_version_favicon_and_no_weight_progress_bars(tiny_models):
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"modeldeploy {modeldeploy.__version__}"
    icon = create_app(registry=Registry(parse_config({"serve": []}))).test_client().get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml" and b"<svg" in icon.data
    done = cli("predict", "sentiment", "I love it", "--source", str(tiny_models["sentiment"]))
    assert done.returncode == 0, done.stderr
    assert "Loading weights" not in done.stderr and "it/s" not in done.stderr


def test_export_checks_its_output_and_key_before_loading(tmp_path):
    wrong_name = cli("export", "sentiment", "--source", "./missing", "--output", "sentiment.txt", cwd=tmp_path)
    assert wrong_name.returncode == 1 and "must end in .dill, got 'sentiment.txt'" in wrong_name.stderr
    short_key = cli("export", "sentiment", "--source", "./missing", "--output", "sentiment.dill", cwd=tmp_path,
                    env={"MODELDEPLOY_SIGNING_KEY": "short"})
    assert short_key.returncode == 1 and "MODELDEPLOY_SIGNING_KEY must be at least 16" in short_key.stderr


def test_unsigned_artifacts_name_the_users_path_and_can_be_accepted_from_the_cli(tiny_models, tmp_path):
    env = {"MODELDEPLOY_CACHE_DIR": str(tmp_path / "cache"), "MODELDEPLOY_SIGNING_KEY": ""}
    exported = cli("export", "sentiment", "--source", str(tiny_models["sentiment"]), "--output", "art/s.dill",
                   cwd=tmp_path, env=env)
    assert exported.returncode == 0, exported.stderr
    refused = cli("predict", "sentiment", "hi", "--source", "art/s.dill", cwd=tmp_path, env=env)
    assert refused.returncode == 1
    assert f"refusing artifact file://{tmp_path}/art/s.dill: it is unsigned" in refused.stderr
    assert "--trust-unsigned" in refused.stderr and "--sha256" in refused.stderr
    accepted = cli("predict", "sentiment", "hi", "--source", "art/s.dill", "--trust-unsigned", cwd=tmp_path, env=env)
    assert accepted.returncode == 0 and json.loads(accepted.stdout)["label"] in {"POSITIVE", "NEGATIVE"}
    cached = cli("predict", "sentiment", "hi", "--source", "art/s.dill", cwd=tmp_path, env=env)
    assert cached.returncode == 1  # the cached copy is re-verified, and named by what the user gave
    assert "refusing artifact art/s.dill: it is unsigned" in cached.stderr and str(tmp_path / "cache") not in cached.stderr
    pulled = cli("pull", "art/s.dill", "--output", "copy/", "--trust-unsigned", cwd=tmp_path, env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert "NOT verified (it has no manifest" not in pulled.stdout  # export wrote one
    assert "NOT verified (it is unsigned; accepted because trust_unsigned is set)" in pulled.stdout


def test_history_of_a_missing_store_says_it_does_not_exist(tmp_path):
    done = cli("history", "sentiment", "--store", "./missing", cwd=tmp_path)
    assert done.returncode == 1 and "does not exist" in done.stderr and "no versions" not in done.stdout


def test_the_server_log_names_the_configured_source_of_an_artifact(tiny_models, tmp_path, caplog):
    wrapper = loading.load("sentiment", source=str(tiny_models["sentiment"]), device="cpu")
    loading.export(wrapper, tmp_path / "store" / "sentiment.dill")
    source = f"file://{tmp_path}/store/sentiment.dill"
    with caplog.at_level(logging.INFO, logger="modeldeploy.registry"):
        registry = served({"serve": ["sentiment"], "cache_dir": str(tmp_path / "cache"),
                           "models": {"sentiment": {"source": source, "trust_unsigned": True}}})
    registry.close()
    assert "model sentiment ready in" in caplog.text and f"(source {source}, device" in caplog.text
    assert str(tiny_models["sentiment"]) not in caplog.text


def test_a_demo_build_that_loses_the_race_uses_the_winners(tmp_path, monkeypatch):
    """Two servers sharing a cache build the same demo model at once: the loser keeps the winner's."""
    from modeldeploy import testing
    from modeldeploy.plugins import get_catalog

    winner = tmp_path / "demo-models" / "sentiment"

    def racing_builder(folder: Path) -> Path:
        testing.build_sentiment(winner)  # the other process publishes while this one builds
        (winner / "published-by-the-winner").touch()
        return testing.build_sentiment(folder)

    monkeypatch.setattr(get_catalog().entry("sentiment").wrapper_class, "demo_builder", staticmethod(racing_builder))
    wrapper = loading.load_demo("sentiment", device="cpu", cache_dir=tmp_path)
    assert wrapper.source == str(winner)
    assert (winner / "published-by-the-winner").exists(), "the winner's folder was not replaced under it"
    assert wrapper.predict("I love it")["label"] in {"POSITIVE", "NEGATIVE"}
    assert sorted(p.name for p in winner.parent.iterdir()) == ["sentiment"]  # no staging folder left
