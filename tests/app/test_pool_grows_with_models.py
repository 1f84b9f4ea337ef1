"""A model an operator starts serving at run time gets its share of the HTTP threads.

The pool is sized at start-up so that every served model's full queue can wait in threads of its
own, with some left for health checks (``Config.http_threads``); a model added later by
``POST /v2/repository/models/NAME/load`` must grow it the same way, or its requests and the health
checks would queue unseen behind the first model's. Real servers, threads counted in /proc.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from live_server import running_server

from modeldeploy.config import parse_config

TOKEN = "pool-grows-admin-token"


def thread_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


@pytest.mark.parametrize("engine", ["local", "process"])
def test_loading_a_model_at_run_time_grows_the_http_pool(tiny_models, tmp_path, engine):
    document = {"models": {"sentiment": {"source": str(tiny_models["sentiment"])}}, "serve": ["sentiment"],
                "server": {"engine": engine, "admin_token": TOKEN}}
    config = parse_config(document)
    added = config.http_threads(["sentiment", "ner"]) - config.http_threads(["sentiment"])
    assert added >= 100  # the test below tells a grown pool from a model's own few threads
    with running_server(document, tmp_path) as server:
        before = thread_count(server.pid)
        answer = server.request("POST", "/v2/repository/models/ner/load", headers={"Authorization": f"Bearer {TOKEN}"},
                                json={"parameters": {"source": str(tiny_models["ner"])}})
        assert answer.status == 200, answer.text
        assert thread_count(server.pid) - before >= added
        assert f"{config.http_threads(['sentiment', 'ner'])} HTTP threads for 2 model(s)" in server.output()
        found = server.request("POST", "/predict", json={"model_name": "ner", "data": "Angela Merkel met Macron."})
        assert found.status == 200
