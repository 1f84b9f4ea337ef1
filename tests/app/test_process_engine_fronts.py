"""``server.fronts: 2`` against the real server: two HTTP front processes on one listening socket,
sharing the model's worker process.

Each front must answer on its own (the other stopped), /metrics on either must count both fronts'
requests once, a front that dies must be started again while the other serves, operators' loads
must be refused alike on both, and SIGTERM must stop every process with status 0.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
from live_server import running_server, session_members
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_for

TOKEN = "several-fronts-operator-token"
BAD_INPUT = {"model_name": "sentiment", "data": [1, 2]}  # a 400 only the metrics test sends


def listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on 127.0.0.1:``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            found.add(inode)
    return found


def fronts(server) -> list[int]:
    """The server's processes holding its listening socket: its HTTP fronts."""
    port = int(server.url.rsplit(":", 1)[1])
    sockets = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    holders = []
    for pid in session_members(server.pid):
        try:
            links = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        except OSError:
            continue
        if links & sockets:
            holders.append(pid)
    return holders


def spawned(server) -> list[int]:
    """The server's processes started by multiprocessing (its workers and its further fronts)."""
    found = []
    for pid in session_members(server.pid):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


@contextmanager
def stopped(pid: int):
    """``pid`` frozen (SIGSTOP) meanwhile: another process must do its work."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def both_ready(server) -> None:
    """Wait until each front says the model is ready (each reads the worker's status every second)."""
    other = wait_for(lambda: [pid for pid in fronts(server) if pid != server.pid], timeout=60)[0]
    for front in (Held(server, frozen=other), Held(server, frozen=server.pid)):
        wait_for(lambda: front.request("GET", "/health/ready")[0] == 200, timeout=60, what="the front to be ready")


def predict(server, text: str = "I loved this film"):
    return server.request("POST", "/predict", json={"model_name": "sentiment", "data": text}, timeout=30)


class Held:
    """A kept-alive connection that one front accepted (the other frozen meanwhile): what is sent on
    it goes to that front."""

    def __init__(self, server, frozen: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=30)
        with stopped(frozen):
            assert self.request("GET", "/health/live")[0] == 200

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        answer = self.connection.getresponse()
        return answer.status, answer.read()

    def counted(self, status: str) -> float:
        """``modeldeploy_requests_total`` of /predict for sentiment with ``status``, as this front's /metrics says."""
        for family in text_string_to_metric_families(self.request("GET", "/metrics")[1].decode()):
            for sample in family.samples:
                if (sample.name == "modeldeploy_requests_total" and sample.labels.get("route") == "/predict"
                        and sample.labels.get("model") == "sentiment" and sample.labels.get("status") == status):
                    return sample.value
        return 0.0


def config(tiny_models, **server):
    return {"models": {"sentiment": {"source": str(tiny_models["sentiment"])}}, "serve": ["sentiment"],
            "server": {"engine": "process", "fronts": 2, **server}}


@pytest.fixture(scope="module")
def two_fronts(tiny_models, tmp_path_factory):
    with running_server(config(tiny_models, admin_token=TOKEN), tmp_path_factory.mktemp("two-fronts")) as server:
        both_ready(server)
        yield server


def test_two_fronts_share_one_worker_and_each_answers_alone(two_fronts):
    first, [other] = two_fronts.pid, [pid for pid in fronts(two_fronts) if pid != two_fronts.pid]
    [worker] = [pid for pid in spawned(two_fronts) if pid != other]
    first_answer = predict(two_fronts)
    assert first_answer.status == 200, first_answer.text
    expected = first_answer.json()["body"]
    for alone in (other, first):
        frozen = first if alone == other else other
        with stopped(frozen):  # only ``alone`` can take new connections now
            answers = [predict(two_fronts) for _ in range(3)]
        assert [answer.status for answer in answers] == [200] * 3, answers[0].text
        assert all(answer.json()["body"] == expected for answer in answers)
    assert sorted(fronts(two_fronts)) == sorted([first, other])
    assert worker not in fronts(two_fronts)  # the model ran in the worker, for both


def test_metrics_on_either_front_count_both_fronts_requests_once(two_fronts):
    other = next(pid for pid in fronts(two_fronts) if pid != two_fronts.pid)
    to_first, to_other = Held(two_fronts, frozen=other), Held(two_fronts, frozen=two_fronts.pid)
    assert [to_first.request("POST", "/predict", BAD_INPUT)[0] for _ in range(3)] == [400] * 3
    assert [to_other.request("POST", "/predict", BAD_INPUT)[0] for _ in range(4)] == [400] * 4
    # the fronts trade their counts every second: each front's /metrics reaches 7 (twice counted, it would pass it)
    for front in (to_first, to_other):
        wait_for(lambda: front.counted("400") == 7, timeout=10, what="7 refusals counted")
        ready = [family for family in text_string_to_metric_families(front.request("GET", "/metrics")[1].decode())
                 if family.name == "modeldeploy_model_ready"]
        assert [sample.value for family in ready for sample in family.samples] == [1.0]  # this front's, not summed


def test_operators_loads_are_refused_alike_on_every_front(two_fronts):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    other = next(pid for pid in fronts(two_fronts) if pid != two_fronts.pid)
    for frozen in (other, two_fronts.pid):
        with stopped(frozen):
            load = two_fronts.request("POST", "/v2/repository/models/sentiment/load", json={}, headers=auth)
            unload = two_fronts.request("POST", "/v2/repository/models/sentiment/unload", headers=auth)
            unknown = two_fronts.request("POST", "/v2/repository/models/nope/load", json={}, headers=auth)
        for refused in (load, unload):
            assert refused.status == 501, refused.text
            assert "server.fronts" in refused.json()["error"]
        assert unknown.status == 404
    assert predict(two_fronts).status == 200  # nothing was unloaded


def test_a_front_that_dies_is_started_again_and_sigterm_stops_every_process(tiny_models, tmp_path):
    with running_server(config(tiny_models), tmp_path) as server:
        both_ready(server)
        other = next(pid for pid in fronts(server) if pid != server.pid)
        to_first, to_other = Held(server, frozen=other), Held(server, frozen=server.pid)
        assert [to_other.request("POST", "/predict", {"model_name": "sentiment", "data": "fine"})[0]
                for _ in range(2)] == [200, 200]
        wait_for(lambda: to_first.counted("200") == 2, timeout=10, what="the other front's answers counted here")
        os.kill(other, signal.SIGKILL)
        assert to_first.request("POST", "/predict", {"model_name": "sentiment", "data": "still"})[0] == 200
        replacement = wait_for(lambda: [pid for pid in fronts(server) if pid not in (server.pid, other)],
                               timeout=60, what="the front started again")[0]
        assert "front process 1 exited with code -9" in server.output()
        to_replacement = Held(server, frozen=server.pid)
        wait_for(lambda: to_replacement.request("GET", "/health/ready")[0] == 200, timeout=10, what="its first read")
        assert to_replacement.request("POST", "/predict", {"model_name": "sentiment", "data": "new"})[0] == 200
        # the dead front's answers stay counted: the counters never go back
        for front in (to_first, to_replacement):
            wait_for(lambda: front.counted("200") == 4, timeout=10, what="every answer counted once")
        processes = session_members(server.pid)
        assert replacement in processes and len(spawned(server)) == 2  # the new front and the worker
        server.process.terminate()
        assert server.process.wait(60) == 0
        wait_for(lambda: not [pid for pid in processes if pid in session_members(server.pid)], timeout=10,
                 what="every front and worker to exit")


def test_fronts_and_workers_end_with_the_first_front_when_it_is_killed(tiny_models, tmp_path):
    with running_server(config(tiny_models), tmp_path) as server:
        both_ready(server)
        assert len(spawned(server)) == 2  # the other front and the worker
        os.kill(server.pid, signal.SIGKILL)  # no drain: nothing of it may be left running
        wait_for(lambda: not [pid for pid in session_members(server.pid) if pid != server.pid], timeout=30,
                 what="the other front and the worker to exit")


def test_a_front_that_does_not_drain_is_killed_after_the_grace_period(tiny_models, tmp_path):
    with running_server(config(tiny_models, shutdown_grace_seconds=1), tmp_path) as server:
        both_ready(server)
        other = next(pid for pid in fronts(server) if pid != server.pid)
        os.kill(other, signal.SIGSTOP)  # it cannot act on SIGTERM
        server.process.terminate()
        assert server.process.wait(60) == 0
        assert "front process 1 had not stopped after its grace period; killing it" in server.output()
        wait_for(lambda: not [pid for pid in session_members(server.pid) if pid != server.pid], timeout=30,
                 what="the stuck front and the worker to exit")
