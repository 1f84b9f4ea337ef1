"""A pushed artifact swapped in on the process engine, where the model's worker process unpickles it.

The same path as test_store_swap.py (export, sign, push to the GCS emulator, load by ``gs://`` URI
over HTTP), against a real ``modeldeploy serve --engine process``: the worker, which inherits the
server's signing key and store settings, must verify before it unpickles, and refuse an unsigned
artifact while the verified version keeps serving.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from live_server import running_server
from versions import relabelled_copy

import modeldeploy
from modeldeploy import loading, store
from modeldeploy.store.signing import SIGNING_KEY_ENV

TOKEN = "process-engine-store-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def label(server) -> str:
    answer = server.request("POST", "/predict", json={"model_name": "sentiment", "data": "I love it"})
    assert answer.status == 200, answer.text
    return answer.json()["body"]["label"]


def load(server, source: str):
    return server.request("POST", "/v2/repository/models/sentiment/load", headers=AUTH,
                          json={"parameters": {"source": source}})


def test_the_worker_swaps_in_a_signed_version_and_refuses_an_unsigned_one(tiny_models, tmp_path: Path, gcs_store,
                                                                           signing_key, exported) -> None:
    v2 = modeldeploy.load("sentiment", source=str(relabelled_copy(tiny_models["sentiment"], tmp_path / "v2",
                                                                  ["BAD", "GOOD"])))
    loading.export(v2, tmp_path / "sentiment.dill", "dill")  # signed: the signing key is set
    signed = store.push(tmp_path / "sentiment.dill", gcs_store)
    with pytest.MonkeyPatch.context() as no_key:  # pushed by someone without the signing key
        no_key.delenv(SIGNING_KEY_ENV)
        unsigned = store.push(exported("sentiment"), f"{gcs_store}/unsigned")
    config = {"models": {"sentiment": {"source": str(tiny_models["sentiment"])}}, "serve": ["sentiment"],
              "cache_dir": str(tmp_path / "cache"), "server": {"engine": "process", "admin_token": TOKEN}}
    (tmp_path / "server").mkdir()
    with running_server(config, tmp_path / "server") as server:
        assert label(server) == "POSITIVE"
        answer = load(server, signed.current_uri)
        assert answer.status == 200 and answer.json()["source"] == signed.current_uri, answer.text
        assert label(server) == "GOOD"

        refused = load(server, unsigned.current_uri)
        assert refused.status == 400 and "sign" in refused.json()["error"], refused.text
        assert "keeps serving" in refused.json()["error"]
        assert label(server) == "GOOD"  # the verified version still serves
