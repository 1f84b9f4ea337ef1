"""A ``lazy: true`` model on the ray engine: the ingress never loads a model, so a lazy one's first
request must reach a replica, whose registry starts the load (before, the ingress answered
"loading (lazy start)" forever)."""

from __future__ import annotations

from pathlib import Path

import pytest
from live_server import running_server
from waiting import wait_for

pytestmark = pytest.mark.slow


def test_a_lazy_model_is_loaded_by_its_first_request(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    config = {"serve": ["sentiment"], "server": {"engine": "ray"},
              "models": {"sentiment": {"source": str(tiny_models["sentiment"]), "lazy": True}}}
    # not ready until its first request: wait for the app to answer, not for readiness
    with running_server(config, tmp_path, ready=False, timeout=240) as server:
        wait_for(lambda: server.request("GET", "/health/live").status == 200, 240, "the ingress to answer",
                 interval=0.5)
        assert server.request("GET", "/health/ready").status == 503  # idle until asked

        def predict():
            return server.request("POST", "/predict", json={"model_name": "sentiment", "data": "I loved it"})

        first = predict()
        assert first.status == 503 and "loading" in first.json()["error"]["message"], first.text
        answered = wait_for(lambda: (answer := predict()).status == 200 and answer, 120, "the lazy model to serve",
                            interval=0.5)
        assert answered.json()["body"]["label"] in {"POSITIVE", "NEGATIVE"}
        wait_for(lambda: server.request("GET", "/health/ready").status == 200, 30, "readiness", interval=0.5)
