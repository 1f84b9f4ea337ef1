"""``modeldeploy list`` and ``modeldeploy predict`` through a real subprocess."""

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from live_server import running_server


def run_cli(*args, env_extra=None, stdin=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy", *args],
        capture_output=True, text=True, env=env, input=stdin, timeout=120,
    )


def test_list_shows_models_with_plugin_and_version():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TASK", "PLUGIN", "VERSION", "DEFAULT", "SOURCE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["sentiment"][1:4] == ["text-classification", "modeldeploy-sentiment", "0.1.0"]
    assert rows["ner"][4] == "dslim/bert-base-NER"


def test_list_reports_broken_plugins_and_json(extra_plugins_path):
    result = run_cli("list", "--json", env_extra={"PYTHONPATH": str(extra_plugins_path)})
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert {m["name"] for m in listing["models"]} >= {"sentiment", "wordcount"}
    assert listing["failed_plugins"][0]["plugin"] == "modeldeploy-broken"
    assert "not installed" in listing["failed_plugins"][0]["error"]
    text = run_cli("list", env_extra={"PYTHONPATH": str(extra_plugins_path)}).stdout
    assert "FAILED plugin modeldeploy-broken: failed to import: ImportError" in text
    assert "FAILED plugin modeldeploy-exits: failed to import: the plugin called sys.exit(3)" in text


def test_a_plugin_calling_sys_exit_does_not_end_import_modeldeploy(extra_plugins_path):
    code = "import modeldeploy; print(sorted(modeldeploy.list_models()))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(extra_plugins_path)})
    assert result.returncode == 0, result.stderr
    assert "'wordcount'" in result.stdout and "'sentiment'" in result.stdout


def test_list_server_shows_what_failed_to_load_and_when_it_is_tried_again(tiny_models, tmp_path):
    config = {"serve": ["ner", "sentiment"],
              "models": {"sentiment": {"source": str(tmp_path / "not-mounted-yet")},
                         "ner": {"source": str(tiny_models["ner"])}},
              "server": {"load_retry_seconds": 60, "load_retry_max_seconds": 60}}
    with running_server(config, tmp_path, ready=False) as server:
        for _ in range(600):
            statuses = {m["name"]: m["status"] for m in server.request("GET", "/models").json()["models"]}
            if statuses["sentiment"]["state"] == "failed" and statuses["ner"]["state"] == "ready":
                break
            time.sleep(0.1)
        failed = statuses["sentiment"]
        assert failed["attempts"] == 1 and 40 <= failed["next_retry_in_seconds"] <= 72
        assert failed["next_retry_at"].endswith("+00:00")
        assert statuses["ner"]["next_retry_in_seconds"] is None
        result = run_cli("list", "--server", server.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "ATTEMPTS", "NEXT", "ATTEMPT", "REASON"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["ner"].split()[1:4] == ["ready", "1", "-"]
    assert rows["sentiment"].split()[1:3] == ["failed", "1"]
    assert re.search(r" in \d+ s +could not load model 'sentiment'", rows["sentiment"])


def test_list_server_says_when_the_server_cannot_be_reached():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = run_cli("list", "--server", f"http://127.0.0.1:{port}")
    assert result.returncode != 0
    assert f"error: cannot read http://127.0.0.1:{port}/models:" in result.stderr


def test_allow_list_applies_to_the_cli():
    result = run_cli("list", "--json", env_extra={"MODELDEPLOY_PLUGINS": "ner"})
    assert [m["name"] for m in json.loads(result.stdout)["models"]] == ["ner"]


def test_predict_one_and_several_texts(tiny_models):
    one = run_cli("predict", "sentiment", "I love it", "--source", str(tiny_models["sentiment"]))
    assert one.returncode == 0, one.stderr
    assert set(json.loads(one.stdout)) == {"label", "score"}
    several = run_cli("predict", "ner", "Angela Merkel", "Paris", "--source", str(tiny_models["ner"]))
    assert isinstance(json.loads(several.stdout), list) and len(json.loads(several.stdout)) == 2


def test_predict_reads_stdin(tiny_models):
    result = run_cli("predict", "summarization", "-", "--source", str(tiny_models["summarization"]),
                     stdin="A long article about parks in the city.")
    assert result.returncode == 0, result.stderr
    assert "summary_text" in json.loads(result.stdout)


@pytest.mark.parametrize(
    "args, message",
    [
        (("predict", "nope", "x"), "error: unknown model 'nope'; available models: embeddings, ner, sentiment, summarization, translation"),
        (("predict", "sentiment", "x", "--source", "/nonexistent/model"), "error: could not load model 'sentiment'"),
        (("predict", "sentiment", "x", "--device", "tpu"), "error: device must be one of"),
    ],
)
def test_predict_errors_are_one_line_and_exit_1(args, message):
    result = run_cli(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
