"""Operators' loads and unloads on ``server.engine: process``, against the real server.

The model-repository routes must do on this engine what they do on the local one (see
test_model_repository.py), carried out in the model's worker process: a new version swapped in, a
failed load leaving the old one serving, an unload answering what was accepted, an installed model
the config left out (or a plugin pip-installed after start-up) served by a worker of its own; and a
worker started again (after a crash)
must come back as the operator left it, not as the config file says.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from live_server import running_server
from test_process_engine import workers
from versions import relabelled_copy
from waiting import wait_for

WORDCOUNT = Path(__file__).resolve().parents[1] / "fixtures" / "plugins" / "wordcount"
TOKEN = "process-engine-operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def sentiment_only(tiny_models, tmp_path_factory):
    """A process-engine server serving the tiny sentiment model; the tiny NER model is installed
    (its plugin is) but not served."""
    config = {"models": {"sentiment": {"source": str(tiny_models["sentiment"])}}, "serve": ["sentiment"],
              "server": {"engine": "process", "admin_token": TOKEN}}
    with running_server(config, tmp_path_factory.mktemp("process-operators")) as server:
        yield server


def predict(server, name: str = "sentiment", text: str = "I love it"):
    return server.request("POST", "/predict", json={"model_name": name, "data": text})


def load(server, name: str = "sentiment", source=None):
    body = {"parameters": {"source": str(source)}} if source is not None else {}
    return server.request("POST", f"/v2/repository/models/{name}/load", json=body, headers=AUTH)


def test_unload_then_load_takes_the_model_out_and_back_in_the_same_worker(sentiment_only):
    [worker] = workers(sentiment_only)
    unloaded = sentiment_only.request("POST", "/v2/repository/models/sentiment/unload", headers=AUTH)
    assert unloaded.status == 200 and unloaded.json()["state"] == "UNAVAILABLE"
    refused = predict(sentiment_only)
    assert refused.status == 503 and "unloaded by an operator" in refused.json()["error"]["message"]
    assert sentiment_only.request("GET", "/health/ready").status == 200  # taken out on purpose
    answer = load(sentiment_only)
    assert answer.status == 200 and answer.json()["state"] == "READY", answer.text
    assert predict(sentiment_only).json()["body"]["label"] in {"POSITIVE", "NEGATIVE"}
    assert workers(sentiment_only) == [worker]  # the worker's registry did it: no process was replaced


def test_a_new_source_is_swapped_in_and_kept_when_the_worker_starts_again(sentiment_only, tiny_models, tmp_path):
    renamed = relabelled_copy(tiny_models["sentiment"], tmp_path / "v2", ["BAD", "GOOD"])
    assert predict(sentiment_only).json()["body"]["label"] == "POSITIVE"
    answer = load(sentiment_only, source=renamed)
    assert answer.status == 200 and answer.json()["source"] == str(renamed), answer.text
    assert predict(sentiment_only).json()["body"]["label"] == "GOOD"
    [model] = sentiment_only.request("GET", "/models").json()["models"]
    assert model["source"] == str(renamed)

    [worker] = workers(sentiment_only)
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: workers(sentiment_only) not in ([], [worker]), timeout=30, what="a new worker")
    wait_for(lambda: predict(sentiment_only).status == 200, timeout=90, what="the new worker to serve")
    assert predict(sentiment_only).json()["body"]["label"] == "GOOD"  # the operator's version, not the config's

    assert load(sentiment_only, source=tiny_models["sentiment"]).status == 200
    assert predict(sentiment_only).json()["body"]["label"] == "POSITIVE"


def test_a_failed_load_keeps_the_serving_version_and_says_why(sentiment_only, tmp_path):
    answer = load(sentiment_only, source=tmp_path / "missing")
    assert answer.status == 400
    message = answer.json()["error"]  # the repository routes answer in Triton's shape
    assert "folder does not exist" in message and "the version serving before keeps serving" in message
    assert predict(sentiment_only).status == 200
    assert sentiment_only.request("GET", "/health/ready").status == 200


def test_an_unloaded_model_stays_unloaded_when_its_worker_starts_again(sentiment_only):
    assert sentiment_only.request("POST", "/v2/repository/models/sentiment/unload", headers=AUTH).status == 200
    [worker] = workers(sentiment_only)
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: workers(sentiment_only) not in ([], [worker]), timeout=30, what="a new worker")
    # the front hears "unloaded" from the new worker: the server is ready again, the model is not
    wait_for(lambda: sentiment_only.request("GET", "/health/ready").status == 200, timeout=90,
             what="the server to be ready again")
    refused = predict(sentiment_only)
    assert refused.status == 503 and "unloaded by an operator" in refused.json()["error"]["message"]
    assert load(sentiment_only).status == 200
    assert predict(sentiment_only).status == 200


def test_loading_a_model_the_config_left_out_starts_a_worker_for_it(sentiment_only, tiny_models):
    assert predict(sentiment_only, "ner", "Angela Merkel").status == 404
    before = set(workers(sentiment_only))
    answer = load(sentiment_only, "ner", source=tiny_models["ner"])
    assert answer.status == 200 and answer.json()["state"] == "READY", answer.text
    assert len(set(workers(sentiment_only)) - before) == 1
    found = predict(sentiment_only, "ner", "Angela Merkel met Emmanuel Macron in Paris.")
    assert found.status == 200 and isinstance(found.json()["body"], list)
    described = {m["name"]: m for m in sentiment_only.request("GET", "/models").json()["models"]}
    assert described["ner"]["source"] == str(tiny_models["ner"]) and described["ner"]["status"]["state"] == "ready"
    metrics = sentiment_only.request("GET", "/metrics").text
    assert 'modeldeploy_items_total{model="ner",outcome="ok"}' in metrics  # the new worker's, gathered by the front


def test_a_plugin_pip_installed_after_start_up_is_served_by_a_worker_of_its_own(tiny_models, tmp_path):
    site = tmp_path / "site"  # on the server's path from the start, empty until the pip install below
    site.mkdir()
    config = {"models": {"sentiment": {"source": str(tiny_models["sentiment"])}}, "serve": ["sentiment"],
              "server": {"engine": "process", "admin_token": TOKEN}}
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    with running_server(config, tmp_path, env=env) as server:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", str(site), str(WORDCOUNT)], check=True, capture_output=True)
        index = server.request("POST", "/v2/repository/index", headers=AUTH).json()
        assert {"name": "wordcount", "version": "1", "state": "UNAVAILABLE", "reason": "installed, not loaded"} in index
        assert load(server, "wordcount").status == 200
        answer = predict(server, "wordcount", "three little words")
        assert answer.status == 200 and answer.json()["body"] == {"words": 3}
        assert len(workers(server)) == 2


def test_unknown_models_are_404_on_this_engine_too(sentiment_only):
    for action in ("load", "unload"):
        answer = sentiment_only.request("POST", f"/v2/repository/models/nosuch/{action}", headers=AUTH)
        assert answer.status == 404 and "sentiment" in answer.json()["error"]


def test_an_unload_answers_what_the_worker_had_accepted(tmp_path, extra_plugins_path):
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(extra_plugins_path), os.environ.get("PYTHONPATH")]))}
    config = {"serve": ["wordcount"], "server": {"engine": "process", "admin_token": TOKEN},
              "models": {"wordcount": {"batch": {"max_batch_size": 1}}}}
    with running_server(config, tmp_path, env=env) as server, ThreadPoolExecutor(3) as pool:
        busy = pool.submit(predict, server, "wordcount", "sleep:3 holds the worker")
        time.sleep(0.5)
        queued = pool.submit(predict, server, "wordcount", "waits its turn")
        time.sleep(0.5)
        unload = pool.submit(server.request, "POST", "/v2/repository/models/wordcount/unload", headers=AUTH)
        # a request sent before the unload reached the front would still be accepted: wait for it first
        wait_for(lambda: server.request("GET", "/v2/models/wordcount/ready").status == 503, timeout=5,
                 what="the front to take the unload")
        late = predict(server, "wordcount", "late")
        assert late.status == 503 and "unloaded by an operator" in late.json()["error"]["message"]
        assert not unload.done()  # it waits for what the worker had accepted
        assert busy.result().status == 200 and queued.result().json()["body"] == {"words": 3}
        assert unload.result().status == 200
        assert "unloaded by an operator" in predict(server, "wordcount", "later").json()["error"]["message"]


def test_a_lazy_model_loads_on_its_first_request(tiny_models, tmp_path):
    config = {"models": {"sentiment": {"source": str(tiny_models["sentiment"]), "lazy": True}},
              "serve": ["sentiment"], "server": {"engine": "process"}}
    with running_server(config, tmp_path, ready=False) as server:
        first = predict(server)
        assert first.status == 503 and "loading" in first.json()["error"]["message"]
        wait_for(lambda: predict(server).status == 200, timeout=90, what="the lazy model to serve")
