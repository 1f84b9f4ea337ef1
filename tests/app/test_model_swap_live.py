"""A new model version swapped in under load on the real server: no request is dropped.

Clients keep calling ``/predict`` on a real ``modeldeploy serve`` process while the operator loads
other versions through ``tritonclient`` (the model-repository extension, with the admin token).
Each version labels its answers differently, so the test sees every swap take effect. On the
process engine the swap happens in the model's worker process.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import tritonclient.http as triton
from live_server import running_server
from test_model_repository import AUTH, TOKEN
from tritonclient.utils import InferenceServerException
from versions import relabelled_copy

CLIENTS = 4


@pytest.mark.parametrize("engine", ["local", "process"])
def test_swapping_versions_under_load_drops_no_request(tiny_models: dict[str, Path], tmp_path: Path,
                                                       engine: str) -> None:
    versions = [tiny_models["sentiment"], relabelled_copy(tiny_models["sentiment"], tmp_path / "v2", ["BAD", "GOOD"])]
    config = {"models": {"sentiment": {"source": str(versions[0])}}, "serve": ["sentiment"],
              "server": {"admin_token": TOKEN, "engine": engine}}
    with running_server(config, tmp_path) as server:
        client = triton.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=120)
        statuses: Counter[int] = Counter()
        labels: list[str] = []
        stop = threading.Event()

        def keep_calling() -> None:
            while not stop.is_set():
                answer = server.request("POST", "/predict", json={"model_name": "sentiment", "data": "I love it"})
                statuses[answer.status] += 1
                if answer.status == 200:
                    labels.append(answer.json()["body"]["label"])

        callers = [threading.Thread(target=keep_calling) for _ in range(CLIENTS)]
        for caller in callers:
            caller.start()
        try:
            for swap in range(4):
                version = versions[(swap + 1) % 2]
                client.load_model("sentiment", headers=AUTH, config=json.dumps({"source": str(version)}))
                expected = "GOOD" if version == versions[1] else "POSITIVE"
                seen_before = len(labels)
                deadline = time.monotonic() + 30
                while expected not in labels[seen_before:]:
                    assert time.monotonic() < deadline, f"swap {swap} never answered with {expected}"
                    time.sleep(0.01)
        finally:
            stop.set()
            for caller in callers:
                caller.join(60)
        client.close()
    assert statuses[200] > 50 and set(statuses) == {200}, statuses
    assert {"GOOD", "POSITIVE"} <= set(labels)


def test_tritonclient_manages_the_repository(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    config = {"models": {n: {"source": str(tiny_models[n])} for n in ("sentiment", "ner")},
              "serve": ["sentiment", "ner"], "server": {"admin_token": TOKEN}}
    with running_server(config, tmp_path) as server:
        client = triton.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=120)
        assert "model_repository" in client.get_server_metadata()["extensions"]
        with pytest.raises(InferenceServerException, match="admin token"):
            client.unload_model("ner")
        client.unload_model("ner", headers=AUTH)
        assert not client.is_model_ready("ner") and client.is_model_ready("sentiment")
        index = {row["name"]: row for row in client.get_model_repository_index(headers=AUTH)}
        assert index["ner"]["state"] == "UNAVAILABLE" and index["sentiment"]["state"] == "READY"
        client.load_model("ner", headers=AUTH)
        assert client.is_model_ready("ner")
        with pytest.raises(InferenceServerException, match="failed to load"):
            client.load_model("ner", headers=AUTH, config=json.dumps({"source": str(tmp_path / "missing")}))
        assert client.is_model_ready("ner")  # the version that served keeps serving
        client.close()
