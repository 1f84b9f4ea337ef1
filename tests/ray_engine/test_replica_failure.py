"""A replica killed by PID while clients keep sending: Ray starts another, every failure in between
is a clean 5xx with a message (never a hang or a dropped connection), and service resumes."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from live_server import LiveServer, running_server
from ray_cluster import replica_pids
from waiting import wait_for

pytestmark = pytest.mark.slow

CLIENTS = 4


def _keep_sending(server: LiveServer, stop: threading.Event, results: list[tuple[float, int | None, object]]) -> None:
    while not stop.is_set():
        sent = time.monotonic()
        try:
            response = server.request("POST", "/predict", json={"model_name": "sentiment", "data": ["fine", "bad"]},
                                      timeout=30)
            body: object = response.json() if response.status != 200 else None
            results.append((sent, response.status, body))
        except Exception as exc:  # noqa: BLE001 - a hang or a dropped connection is what the test looks for
            results.append((sent, None, repr(exc)))


def _two_replicas(server: LiveServer, without: int | None = None) -> set[int] | None:
    pids = replica_pids("sentiment", session=server.pid)
    return pids if len(pids) == 2 and without not in pids else None


def test_a_replica_killed_under_load_fails_cleanly_and_service_resumes(tiny_models: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    config = {"serve": ["sentiment"], "server": {"engine": "ray"},
              "models": {"sentiment": {"source": str(tiny_models["sentiment"]), "replicas": 2}}}
    with running_server(config, tmp_path, timeout=240) as server:
        before = wait_for(lambda: _two_replicas(server), 60, "2 replicas", interval=0.5)
        stop, results = threading.Event(), []
        clients = [threading.Thread(target=_keep_sending, args=(server, stop, results)) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        try:
            time.sleep(3)
            victim = min(before)
            os.kill(victim, signal.SIGKILL)
            after = wait_for(lambda: _two_replicas(server, without=victim), 120, "Ray to replace the killed replica",
                             interval=0.5)
            replaced = time.monotonic()
            time.sleep(3)
        finally:
            stop.set()
            for client in clients:
                client.join(60)
    failures = [(status, body) for _, status, body in results if status != 200]
    print(f"\n{len(results)} requests while a replica was killed and replaced: {len(failures)} failed "
          f"({sorted({status for status, _ in failures}, key=str)})")
    assert len(after - before) == 1, "exactly the killed replica was replaced"
    for status, body in failures:
        assert status is not None, f"a request hung or lost its connection: {body}"
        assert 500 <= status < 600 and body["error"]["message"], (status, body)
    assert any(status == 200 and sent > replaced for sent, status, _ in results), "service did not resume"
    assert sum(1 for _, status, _ in results if status == 200) > len(failures)


def test_rays_queue_limit_is_the_same_503_with_retry_after(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """One replica taking 2 requests at once (max_queue 1 + max_batch_size 1) and 1 waiting in
    Ray's queue: a burst of 24 clients is partly refused, each refusal a 503 that says why."""
    config = {"serve": ["sentiment"], "server": {"engine": "ray"},
              "models": {"sentiment": {"source": str(tiny_models["sentiment"]), "max_queued_requests": 1,
                                       "batch": {"max_queue": 1, "max_batch_size": 1}}}}
    with running_server(config, tmp_path, timeout=240) as server:
        answers: list = []

        def send() -> None:
            for _ in range(10):
                response = server.request("POST", "/predict", json={"model_name": "sentiment", "data": "ok " * 200})
                retry_after = ",".join(response.headers.get_all("Retry-After") or [])  # every one sent
                answers.append((response.status, retry_after, response.json()))

        clients = [threading.Thread(target=send) for _ in range(24)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(120)
    refused = [(retry_after, body) for status, retry_after, body in answers if status != 200]
    print(f"\n{len(answers)} requests, {len(refused)} refused")
    assert len(answers) == 240 and all(status in (200, 503) for status, _, _ in answers)
    assert all(retry_after == "1" and "overloaded" in body["error"]["message"] for retry_after, body in refused), \
        {body["error"]["message"]: retry_after for retry_after, body in refused}
    assert any("max_queued_requests" in body["error"]["message"] for _, body in refused), "Ray's queue never refused"
