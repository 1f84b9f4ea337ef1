"""The store against a real GCS emulator: round trips per plugin and format, history and pinning,
create-only conflicts, retries, an unreachable bucket with and without a cached copy."""

import logging
import threading
from datetime import datetime, timezone

import pytest
from conftest import SAMPLES
from gcs_emulator import Emulator, free_port

from modeldeploy import store
from modeldeploy.loading import load_artifact
from modeldeploy.plugins import get_catalog
from modeldeploy.config import parse_config
from modeldeploy.errors import ArtifactConflictError, StoreUnavailableError
from modeldeploy.registry import FAILED, READY, Registry
from modeldeploy.store.gcs import RETRY_DEADLINE_ENV
from modeldeploy.store.streams import sha256_file

MOMENT = datetime(2024, 1, 31, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("format", ["dill", "pretrained"])
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_export_push_pull_load_predict_round_trip(name, format, gcs_store, exported, reference_predictions,
                                                  tmp_path, signing_key):
    pushed = store.push(exported(name, format), gcs_store)
    assert pushed.current_uri == f"{gcs_store}/{name}{store.uri.EXTENSIONS[format]}"
    wrapper = load_artifact(pushed.current_uri, name=name, cache_dir=tmp_path / "cache")
    assert type(wrapper) is type(get_catalog().entry(name).wrapper_class(device="cpu"))
    assert wrapper.predict(SAMPLES[name]) == reference_predictions[name]


def test_push_streams_and_reports_progress(gcs_store, exported, tmp_path):
    artifact = exported("sentiment")
    seen = []
    store.push(artifact, gcs_store, on_bytes=seen.append)
    assert sum(seen) == artifact.stat().st_size
    pulled = tmp_path / "sentiment.dill"
    remote = store.open_store(gcs_store)
    store.fetch(remote, "sentiment.dill", pulled, store.TrustPolicy(trust_unsigned=True), on_bytes=seen.append)
    assert pulled.read_bytes() == artifact.read_bytes()
    assert (tmp_path / "sentiment.manifest.json").is_file()


def test_history_lists_versions_and_a_server_can_pin_one(gcs_store, exported, tmp_path, signing_key):
    first = store.push(exported("sentiment"), gcs_store, now=MOMENT)
    second = store.push(exported("sentiment", "pretrained"), gcs_store, now=MOMENT.replace(hour=13))
    third = store.push(exported("ner"), gcs_store, now=MOMENT.replace(hour=14))
    fourth = store.push(exported("sentiment"), gcs_store, now=MOMENT.replace(hour=15))
    versions = store.history("sentiment", gcs_store)
    assert [v.uri for v in versions] == [fourth.history_uri, second.history_uri, first.history_uri]
    assert [v.timestamp for v in versions][-1] == "20240131T120000.000000Z"
    assert [v.current for v in versions] == [True, True, True]  # the dill pushed twice is identical
    assert {v.signature for v in versions} == {"valid"}
    assert third.history_uri not in [v.uri for v in versions]

    pinned = second.history_uri
    config = parse_config({"cache_dir": str(tmp_path / "cache"), "serve": ["sentiment"],
                           "models": {"sentiment": {"source": pinned, "device": "cpu"}}})
    registry = Registry(config)
    registry.start(background=False)
    assert registry.status("sentiment").state == READY
    assert registry.predict("sentiment", "I love it")["label"] in {"POSITIVE", "NEGATIVE"}
    assert registry.wrapper("sentiment").source.endswith(second.manifest.sha256)  # the pretrained one


def test_history_objects_are_create_only(gcs_store):
    remote = store.open_store(gcs_store)
    remote.write_bytes("historic/small.json", b"first", create_only=True)
    with pytest.raises(ArtifactConflictError, match="already exists"):
        remote.write_bytes("historic/small.json", b"second", create_only=True)
    assert remote.read_bytes("historic/small.json") == b"first"


def test_local_history_objects_are_create_only(exported, tmp_path):
    remote = store.open_store(str(tmp_path / "store"))
    remote.write_bytes("historic/small.json", b"first", create_only=True)
    with pytest.raises(ArtifactConflictError, match="already exists"):
        remote.write_bytes("historic/small.json", b"second", create_only=True)
    assert remote.read_bytes("historic/small.json") == b"first"
    store.push(exported("sentiment"), str(tmp_path / "store"), now=MOMENT)
    store.push(exported("sentiment"), str(tmp_path / "store"), now=MOMENT)  # same instant: another version
    assert len(store.history("sentiment", str(tmp_path / "store"))) == 2
    assert not [p for p in (tmp_path / "store").rglob(".upload-*")], "no temporary files left behind"


def test_unreachable_bucket_uses_a_verified_cached_copy(gcs_store, exported, tmp_path, signing_key,
                                                        monkeypatch, caplog):
    pushed = store.push(exported("sentiment"), gcs_store)
    cache = tmp_path / "cache"
    load_artifact(pushed.current_uri, cache_dir=cache)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv(RETRY_DEADLINE_ENV, "0.5")
    with caplog.at_level(logging.WARNING, logger="modeldeploy.store"):
        wrapper = load_artifact(pushed.current_uri, cache_dir=cache)
    assert wrapper.is_loaded
    assert "store unreachable" in caplog.text and "using the verified cached copy" in caplog.text

    cached = next(cache.rglob("sentiment.dill"))
    cached.write_bytes(cached.read_bytes()[:-1])
    with pytest.raises(StoreUnavailableError, match="the cached copy is unusable.*truncated"):
        load_artifact(pushed.current_uri, cache_dir=cache)


def test_unreachable_bucket_without_cache_fails_that_model_only(tiny_models, tmp_path, monkeypatch, signing_key):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv(RETRY_DEADLINE_ENV, "0.5")
    config = parse_config({"cache_dir": str(tmp_path / "cache"), "serve": ["ner", "sentiment"], "models": {
        "sentiment": {"source": "gs://nowhere/models/sentiment.dill"},
        "ner": {"source": str(tiny_models["ner"])},
    }})
    registry = Registry(config)
    registry.start(background=False)
    status = registry.status("sentiment")
    assert status.state == FAILED
    assert "unreachable" in status.reason and "no cached copy" in status.reason
    assert registry.status("ner").state == READY


def test_transient_outage_is_retried_until_the_bucket_answers(exported, tmp_path, monkeypatch, signing_key):
    """The emulator comes up only after the first attempts failed; the backoff retries reach it."""
    data = tmp_path / "data"
    store.push(exported("sentiment"), str(data / "late-bucket" / "models"))
    late = Emulator(tmp_path / "late", data=data)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", late.url)
    monkeypatch.setenv(RETRY_DEADLINE_ENV, "30")
    timer = threading.Timer(1.5, late.start)
    timer.start()
    try:
        wrapper = load_artifact("gs://late-bucket/models/sentiment.dill", cache_dir=tmp_path / "cache")
    finally:
        timer.join()
        late.stop()
    assert wrapper.predict("I love it")["label"] in {"POSITIVE", "NEGATIVE"}


def test_pinned_sha256_from_config_through_the_registry(gcs_store, exported, tmp_path):
    artifact = exported("ner", "pretrained")
    pushed = store.push(artifact, gcs_store)
    config = parse_config({"cache_dir": str(tmp_path / "cache"), "serve": ["ner", "sentiment"], "models": {
        "ner": {"source": pushed.current_uri, "sha256": sha256_file(artifact)[0], "settings": {"stride": 8}},
        "sentiment": {"source": pushed.current_uri.replace("ner.pretrained.tar", "sentiment.dill")},
    }})
    registry = Registry(config)
    registry.start(background=False)
    assert registry.status("ner").state == READY
    assert registry.wrapper("ner").settings["stride"] == 8
    assert registry.status("sentiment").state == FAILED
    assert "sentiment.dill does not exist" in registry.status("sentiment").reason
