"""Store URIs and artifact names: what parses, and names that could escape a prefix or the cache."""

import io
import json
import tarfile
from pathlib import Path

import pytest

from modeldeploy import store
from modeldeploy.errors import ArtifactVerificationError, StoreError
from modeldeploy.loading import load_artifact
from modeldeploy.store import open_store
from modeldeploy.store.manifest import build_manifest
from modeldeploy.store.uri import check_key, is_artifact_source, parse_store_uri, split_artifact_uri


def test_store_uris_parse(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(parse_store_uri("gs://bucket/a/b/")) == "gs://bucket/a/b"
    assert parse_store_uri("gs://bucket").prefix == ""
    assert parse_store_uri("./models").location == str(tmp_path / "models")
    assert parse_store_uri(f"file://{tmp_path}/m").location == str(tmp_path / "m")
    assert split_artifact_uri("gs://b-1/p/historic/20240131T120000.000000Z_sentiment.dill") == (
        parse_store_uri("gs://b-1/p/historic"), "20240131T120000.000000Z_sentiment.dill")
    assert split_artifact_uri("sentiment.pretrained.tar")[0].location == str(tmp_path)


@pytest.mark.parametrize("uri", [
    "gs://bucket/../other/x.dill", "gs://bucket/a/../../x.dill", "gs://bucket/a//x.dill",
    "gs://bucket/..", "../models/x.dill", "models/../../x.dill", "file://relative/x.dill",
    "gs://bucket/a\\..\\x.dill", "gs://bucket/.hidden/x.dill", "gs://Bad_Bucket/x.dill",
    "s3://bucket/x.dill", "gs://bucket", "gs://bucket/x.txt",
])
def test_unsafe_or_unknown_artifact_uris_are_refused(uri):
    with pytest.raises(StoreError):
        split_artifact_uri(uri)


@pytest.mark.parametrize("key", ["../x.dill", "/etc/passwd", "a/../../x", "a//b", "", ".", "a/./b", "x\\..\\y"])
def test_unsafe_keys_never_reach_the_file_system(key, tmp_path):
    local = open_store(str(tmp_path / "store"))
    with pytest.raises(StoreError, match="artifact name"):
        check_key(key)
    with pytest.raises(StoreError):
        local.write_bytes(key, b"x")
    assert not any(tmp_path.rglob("x*"))


def test_artifact_sources_are_told_apart_from_hub_ids_and_folders():
    assert is_artifact_source("gs://bucket/models/sentiment.dill")
    assert is_artifact_source("file:///srv/models/sentiment.dill")
    assert is_artifact_source("models/ner.pretrained.tar")
    assert not is_artifact_source("distilbert-base-uncased-finetuned-sst-2-english")
    assert not is_artifact_source("/srv/models/sentiment")
    assert not is_artifact_source(None)


def test_a_manifest_cannot_smuggle_a_path_as_model_name(tmp_path):
    manifest = build_manifest("sentiment", "dill", "0" * 64, 1)
    data = json.loads(manifest.to_json())
    data["name"] = "../../etc/evil"
    with pytest.raises(ArtifactVerificationError, match="invalid name"):
        store.Manifest.from_json(json.dumps(data).encode(), "test")


def _tar_with(member: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(member)
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    return buffer.getvalue()


@pytest.mark.parametrize("member", ["../escape.json", "/abs.json", "sub/dir.json", "model.bin", "code.py"])
def test_pretrained_members_outside_the_allow_list_are_refused(member, tmp_path):
    artifact = tmp_path / "ner.pretrained.tar"
    artifact.write_bytes(_tar_with(member))
    cache = tmp_path / "cache"
    with pytest.raises(StoreError, match="may not hold"):
        load_artifact(str(artifact), cache_dir=cache, trust_unsigned=True)
    assert not (tmp_path / "escape.json").exists() and not Path("/abs.json").exists()
    assert not list((cache / "pretrained").rglob("*.json"))
