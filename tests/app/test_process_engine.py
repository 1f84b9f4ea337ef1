"""``server.engine: process`` against the real server: each model in a worker process of its own.

The answers must be the local engine's, the model must really run outside the front, a worker
that dies must be reported and started again, and stopping the server must stop every worker.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from live_server import running_server, session_members, tiny_models_config
from same_results import assert_same
from waiting import wait_for

import modeldeploy

TEXTS = ["I loved this film", "Angela Merkel met Emmanuel Macron in Paris.", "awful, just awful"]


def workers(server) -> list[int]:
    """The server's worker processes (multiprocessing's spawned children in its session)."""
    found = []
    for pid in session_members(server.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            found.append(pid)
    return found


@pytest.fixture(scope="module")
def process_server(tiny_models, tmp_path_factory):
    models = {name: tiny_models[name] for name in ("sentiment", "ner")}
    config = tiny_models_config(models, server={"engine": "process"})
    with running_server(config, tmp_path_factory.mktemp("process-engine")) as server:
        yield server


@pytest.mark.parametrize("model", ["sentiment", "ner"])
def test_answers_are_the_local_engines(process_server, tiny_models, model):
    expected = modeldeploy.load(model, str(tiny_models[model]), device="cpu").predict(TEXTS)
    answer = process_server.request("POST", "/predict", json={"model_name": model, "data": TEXTS})
    assert answer.status == 200, answer.text
    assert_same(answer.json()["body"], expected)
    infer = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [TEXTS[0]]}]}
    assert process_server.request("POST", f"/v2/models/{model}/infer", json=infer).status == 200


def test_each_model_runs_in_a_worker_process_of_its_own(process_server):
    assert len(workers(process_server)) == 2
    described = {entry["name"]: entry for entry in process_server.request("GET", "/models").json()["models"]}
    assert described["sentiment"]["status"]["state"] == "ready" and described["sentiment"]["device"] == "cpu"
    metrics = process_server.request("GET", "/metrics").text
    assert 'modeldeploy_items_total{model="sentiment",outcome="ok"}' in metrics  # counted in the worker


def test_bad_input_is_refused_by_the_front_as_on_the_local_engine(process_server):
    answer = process_server.request("POST", "/predict", json={"model_name": "sentiment", "data": [1, 2]})
    assert answer.status == 400 and "data" in answer.json()["error"]["message"]


def test_a_worker_that_dies_is_reported_then_started_again(tiny_models, tmp_path):
    config = tiny_models_config({"sentiment": tiny_models["sentiment"]}, server={"engine": "process"})
    with running_server(config, tmp_path) as server:
        [worker] = workers(server)
        os.kill(worker, signal.SIGKILL)
        def reason() -> str:
            return server.request("GET", "/health/ready").json()["not_ready"].get("sentiment", {}).get("reason") or ""

        assert "started again" in wait_for(lambda: "exited with code -9" in reason() and reason(), timeout=10)
        refused = server.request("POST", "/predict", json={"model_name": "sentiment", "data": "still there?"})
        assert refused.status == 503 and refused.headers["Retry-After"]
        wait_for(lambda: server.request("GET", "/health/ready").status == 200, timeout=90)
        assert workers(server) and workers(server) != [worker]
        answer = server.request("POST", "/predict", json={"model_name": "sentiment", "data": "back again"})
        assert answer.status == 200 and answer.json()["body"]["label"] in {"POSITIVE", "NEGATIVE"}


@pytest.mark.parametrize("to_the_group", [False, True], ids=["front", "whole-group"])
def test_sigterm_stops_every_worker(tiny_models, tmp_path, to_the_group):
    """A service manager (systemd, ``timeout``) may signal the whole group: the workers must then
    outlast the front's drain rather than die first and be "restarted"."""
    config = tiny_models_config({"sentiment": tiny_models["sentiment"]},
                                server={"engine": "process", "shutdown_grace_seconds": 1})
    with running_server(config, tmp_path) as server:
        assert workers(server)
        if to_the_group:
            os.killpg(server.pid, signal.SIGTERM)
        else:
            os.kill(server.pid, signal.SIGTERM)
        assert server.process.wait(30) == 0
        wait_for(lambda: not workers(server), timeout=15)
        assert "Traceback" not in server.output() and "exited with code" not in server.output()


def test_a_full_worker_is_refused_by_the_front_before_flask(tmp_path, extra_plugins_path):
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(extra_plugins_path), os.environ.get("PYTHONPATH")]))}
    config = {"serve": ["wordcount"], "server": {"engine": "process"},
              "models": {"wordcount": {"batch": {"max_queue": 2, "max_batch_size": 1}}}}

    def predict(text: str):
        return server.request("POST", "/predict", json={"model_name": "wordcount", "data": text})

    with running_server(config, tmp_path, env=env) as server, ThreadPoolExecutor(2) as pool:
        busy = pool.submit(predict, "sleep:4 holds the worker")
        wait_for(lambda: "modeldeploy_queue_depth" in server.request("GET", "/metrics").text)
        time.sleep(0.5)
        queued = pool.submit(predict, "waits its turn")
        time.sleep(0.5)
        refused = predict("one too many")
        assert refused.status == 503 and refused.headers["Retry-After"] == "1"
        assert "in flight to its worker process" in refused.json()["error"]["message"]
        assert busy.result().status == 200 and queued.result().status == 200
        assert predict("three little words").json()["body"] == {"words": 3}
