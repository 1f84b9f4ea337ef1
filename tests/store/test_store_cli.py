"""``modeldeploy export | push | pull | history`` end to end, as a user runs them (subprocesses)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import SIGNING_KEY

from modeldeploy.store.signing import SIGNING_KEY_ENV


@pytest.fixture
def cli(emulator, tmp_path):
    env = {**os.environ, "STORAGE_EMULATOR_HOST": emulator.url, SIGNING_KEY_ENV: SIGNING_KEY,
           "MODELDEPLOY_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}

    def run(*args, check=True):
        done = subprocess.run([sys.executable, "-m", "modeldeploy", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=300)
        if check:
            assert done.returncode == 0, done.stderr
        return done

    return run


def test_export_push_history_pull_predict(cli, gcs_store, tiny_models, tmp_path):
    exported = cli("export", "sentiment", "--source", str(tiny_models["sentiment"]), "--output", "out/sentiment.dill")
    assert "signed (key id" in exported.stdout
    assert json.loads((tmp_path / "out" / "sentiment.manifest.json").read_text())["plugin"]["distribution"] == (
        "modeldeploy-sentiment")

    pushed = cli("push", "out/sentiment.dill", gcs_store)
    history_uri = pushed.stdout.split()[1]
    assert history_uri.startswith(f"{gcs_store}/historic/") and history_uri.endswith("_sentiment.dill")
    cli("push", "ner", gcs_store, "--source", str(tiny_models["ner"]), "--format", "pretrained")

    listed = json.loads(cli("history", "sentiment", "--store", gcs_store, "--json").stdout)
    assert [(v["uri"], v["current"], v["signature"]) for v in listed] == [(history_uri, True, "valid")]
    assert "pretrained" in cli("history", "ner", "--store", gcs_store).stdout

    pulled = cli("pull", history_uri, "--output", ".")
    assert "verified by signature" in pulled.stdout
    local = tmp_path / history_uri.rsplit("/", 1)[1]
    assert local.read_bytes() == (tmp_path / "out" / "sentiment.dill").read_bytes()

    predicted = cli("predict", "sentiment", "I love it", "--source", f"{gcs_store}/sentiment.dill")
    assert json.loads(predicted.stdout)["label"] in {"POSITIVE", "NEGATIVE"}
    entities = cli("predict", "ner", "Angela Merkel visited Paris", "--source", f"{gcs_store}/ner.pretrained.tar")
    assert isinstance(json.loads(entities.stdout), list)


def test_cli_refuses_a_tampered_artifact_with_one_clear_line(cli, tiny_models, tmp_path):
    cli("export", "sentiment", "--source", str(tiny_models["sentiment"]), "--output", "sentiment.dill")
    cli("push", "sentiment.dill", "store")
    target = next((tmp_path / "store" / "historic").glob("*_sentiment.dill"))  # the current version
    target.write_bytes(target.read_bytes()[:-10])
    refused = cli("pull", "store/sentiment.dill", "--output", "copy.dill", check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: refusing artifact") and "truncated" in refused.stderr
    assert not (tmp_path / "copy.dill").exists()
    bad_name = cli("pull", "gs://bucket/../secret.dill", "--output", "x.dill", check=False)
    assert bad_name.returncode == 1 and "unsafe artifact name" in bad_name.stderr
