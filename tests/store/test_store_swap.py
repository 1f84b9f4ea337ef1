"""A newly pushed signed artifact swapped in while the server runs, and an unverifiable one refused.

The real path an operator takes: export a new version, sign it, push it to the bucket (the GCS
emulator), then ``POST /v2/repository/models/sentiment/load`` with its ``gs://`` URI.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from versions import relabelled_copy

import modeldeploy
from modeldeploy import loading, store
from modeldeploy.app import create_app
from modeldeploy.config import parse_config
from modeldeploy.registry import Registry
from modeldeploy.store.signing import SIGNING_KEY_ENV

TOKEN = "operator-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def served_v1(tiny_models: dict[str, Path], tmp_path: Path):
    """A client and registry serving the tiny sentiment model (labels POSITIVE/NEGATIVE) from its folder."""
    registry = Registry(parse_config({
        "serve": ["sentiment"], "models": {"sentiment": {"source": str(tiny_models["sentiment"])}},
        "cache_dir": str(tmp_path / "cache"), "server": {"admin_token": TOKEN}}))
    registry.start(background=False)
    yield create_app(registry=registry).test_client(), registry
    registry.close()


def label(client) -> str:
    answer = client.post("/predict", json={"model_name": "sentiment", "data": "I love it"})
    assert answer.status_code == 200, answer.json
    return answer.json["body"]["label"]


def test_a_pushed_signed_version_is_swapped_in_and_an_unsigned_one_refused(served_v1, gcs_store, signing_key,
                                                                           exported, tiny_models, tmp_path):
    client, registry = served_v1
    assert label(client) == "POSITIVE"
    v2 = modeldeploy.load("sentiment", source=str(relabelled_copy(tiny_models["sentiment"], tmp_path / "v2",
                                                                  ["BAD", "GOOD"])))
    loading.export(v2, tmp_path / "sentiment.dill", "dill")  # signed: the signing key is set
    pushed = store.push(tmp_path / "sentiment.dill", gcs_store)

    answer = client.post("/v2/repository/models/sentiment/load", headers=AUTH,
                         json={"parameters": {"source": pushed.current_uri}})
    assert answer.status_code == 200, answer.json
    assert label(client) == "GOOD" and registry.model("sentiment").source == pushed.current_uri

    with pytest.MonkeyPatch.context() as no_key:  # pushed by someone without the signing key
        no_key.delenv(SIGNING_KEY_ENV)
        unsigned = store.push(exported("sentiment"), f"{gcs_store}/unsigned")
    refused = client.post("/v2/repository/models/sentiment/load", headers=AUTH,
                          json={"parameters": {"source": unsigned.current_uri}})
    assert refused.status_code == 400
    assert "sign" in refused.json["error"] and "keeps serving" in refused.json["error"]
    assert label(client) == "GOOD"  # the verified version still serves


def test_a_pinned_sha256_that_does_not_match_is_refused(served_v1, gcs_store, signing_key, exported):
    client, _ = served_v1
    pushed = store.push(exported("sentiment"), gcs_store)
    refused = client.post("/v2/repository/models/sentiment/load", headers=AUTH,
                          json={"parameters": {"source": pushed.current_uri, "sha256": "0" * 64}})
    assert refused.status_code == 400 and "sha256" in refused.json["error"]
    assert label(client) == "POSITIVE"


def test_an_unreachable_bucket_is_503_and_changes_nothing(served_v1, monkeypatch):
    client, _ = served_v1
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("MODELDEPLOY_GCS_RETRY_DEADLINE", "2")
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    refused = client.post("/v2/repository/models/sentiment/load", headers=AUTH,
                          json={"parameters": {"source": "gs://no-such-bucket/models/sentiment.dill"}})
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert label(client) == "POSITIVE"
