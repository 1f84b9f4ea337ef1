"""An artifact is identified by its manifest, never by its file name: a pulled copy loads under
any name or folder, and a manifest describing another model is refused before anything runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import SAMPLES, SIGNING_KEY

import modeldeploy
from modeldeploy.config import parse_config
from modeldeploy.errors import ArtifactVerificationError, StoreError
from modeldeploy.loading import load_artifact
from modeldeploy.registry import READY, Registry
from modeldeploy.store.signing import SIGNING_KEY_ENV


@pytest.fixture
def pull(emulator, tmp_path):
    """``pull(uri, output)`` with the real CLI, as a user runs it (signing key set)."""
    env = {**os.environ, "STORAGE_EMULATOR_HOST": emulator.url, SIGNING_KEY_ENV: SIGNING_KEY, "HF_HUB_OFFLINE": "1"}

    def run(uri: str, output: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "modeldeploy", "pull", uri, "--output", output],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    return run


@pytest.mark.parametrize("where", ["local", "gs"])
def test_a_pulled_copy_loads_and_predicts_under_any_name(where, pull, gcs_store, exported, signing_key, tmp_path,
                                                          reference_predictions):
    destination = gcs_store if where == "gs" else str(tmp_path / "store")
    current = modeldeploy.store.push(exported("sentiment"), destination).current_uri
    outputs = {
        "pulled.dill": tmp_path / "pulled.dill",
        "copies/anything.bin": tmp_path / "copies" / "anything.bin",  # a folder that does not exist yet
        "fresh/folder/": tmp_path / "fresh" / "folder" / "sentiment.dill",  # trailing '/': a folder, created
    }
    (tmp_path / "copies").mkdir()
    for output, path in outputs.items():
        done = pull(current, output)
        assert "verified by signature" in done.stdout
        assert path.read_bytes() == exported("sentiment").read_bytes()
        wrapper = modeldeploy.load("sentiment", source=str(path), device="cpu", cache_dir=tmp_path / "cache")
        assert wrapper.predict(SAMPLES["sentiment"]) == reference_predictions["sentiment"]


def test_the_registry_serves_a_renamed_pinned_artifact(exported, tmp_path, reference_predictions):
    renamed = tmp_path / "blob"
    shutil.copy(exported("sentiment"), renamed)
    manifest = exported("sentiment").with_name("sentiment.manifest.json")
    sha256 = json.loads(manifest.read_text())["sha256"]
    with pytest.raises(StoreError, match="cannot tell what 'blob' holds: it has no manifest"):
        modeldeploy.load("sentiment", source=str(renamed), sha256=sha256, cache_dir=tmp_path / "cache")
    shutil.copy(manifest, tmp_path / "blob.manifest.json")
    config = parse_config({"models": {"sentiment": {"source": str(renamed), "sha256": sha256, "device": "cpu"}},
                           "serve": ["sentiment"],
                           "cache_dir": str(tmp_path / "cache")})
    registry = Registry(config)
    registry.start(background=False)
    try:
        assert registry.status("sentiment").state == READY, registry.status("sentiment").reason
        assert registry.predict("sentiment", SAMPLES["sentiment"]) == reference_predictions["sentiment"]
    finally:
        registry.close()


def test_a_manifest_of_another_model_is_refused_whatever_the_file_is_called(exported, tmp_path):
    disguised = tmp_path / "ner.dill"
    shutil.copy(exported("sentiment"), disguised)
    shutil.copy(exported("sentiment").with_name("sentiment.manifest.json"), tmp_path / "ner.manifest.json")
    with pytest.raises(ArtifactVerificationError, match="describes an artifact of model 'sentiment', not 'ner'"):
        modeldeploy.load("ner", source=str(disguised), cache_dir=tmp_path / "cache", trust_unsigned=True)
    assert not list((tmp_path / "cache").rglob("ner.dill")), "nothing is copied before the identity check"
    # without a name to check against, the manifest says what it is
    assert load_artifact(str(disguised), cache_dir=tmp_path / "cache", trust_unsigned=True).name == "sentiment"


def test_a_file_named_as_the_other_format_is_refused(exported, tmp_path):
    misnamed = tmp_path / "sentiment.pretrained.tar"
    shutil.copy(exported("sentiment"), misnamed)
    shutil.copy(exported("sentiment").with_name("sentiment.manifest.json"),
                tmp_path / "sentiment.pretrained.manifest.json")
    with pytest.raises(ArtifactVerificationError, match="describes a dill artifact, but 'sentiment.pretrained.tar'"):
        modeldeploy.load("sentiment", source=str(misnamed), cache_dir=tmp_path / "cache", trust_unsigned=True)
