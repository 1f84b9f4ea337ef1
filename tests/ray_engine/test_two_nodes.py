"""Two Ray nodes on two hosts of the test's own (network namespaces): a model whose replica can only
be placed on the worker answers through the ingress on the head."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from live_server import running_server
from ray_cluster import RAY, TwoHosts, replica_pids, stop_group
from waiting import wait_for

import modeldeploy

pytestmark = pytest.mark.slow

GCS_PORT = "6380"


def _request(hosts: TwoHosts, url: str, body: dict | None = None) -> tuple[int, dict]:
    """One HTTP request sent from the head host (the test's own process lives outside both)."""
    script = ("import json, sys, urllib.request, urllib.error\n"
              "url, body = sys.argv[1], sys.argv[2]\n"
              "request = urllib.request.Request(url, data=body.encode() or None, "
              "headers={'Content-Type': 'application/json'})\n"
              "try:\n    answer = urllib.request.urlopen(request, timeout=60)\n"
              "except urllib.error.HTTPError as error:\n    answer = error\n"
              "print(json.dumps([answer.status, json.loads(answer.read())]))\n")
    done = hosts.run(hosts.head, sys.executable, "-c", script, url, json.dumps(body) if body else "", timeout=90)
    assert done.returncode == 0, done.stderr
    status, answer = json.loads(done.stdout)
    return status, answer


def _ray_nodes(hosts: TwoHosts, env: dict[str, str]) -> int:
    status = hosts.run(hosts.head, RAY, "status", "--address", f"{hosts.head_ip}:{GCS_PORT}", env=env, timeout=60)
    return sum(1 for line in status.stdout.splitlines() if line.strip().startswith("1 node_"))


def _start_node(hosts: TwoHosts, namespace: str, env: dict[str, str], *arguments: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["ip", "netns", "exec", namespace, RAY, "start", "--block", "--disable-usage-stats",
                             *arguments], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def test_a_model_on_the_worker_node_answers_through_the_heads_ingress(two_hosts: TwoHosts,
                                                                       tiny_models: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    # Ray 2.60 authenticates its nodes with a shared token; this cluster's is made here.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # The head offers no CPU: a replica asking for one can only be placed on the worker.
    head = _start_node(two_hosts, two_hosts.head, env, "--head", "--node-ip-address", two_hosts.head_ip,
                       "--port", GCS_PORT, "--num-cpus", "0", "--include-dashboard", "false")
    worker = None
    try:
        wait_for(lambda: _ray_nodes(two_hosts, env) == 1, 90, "the head node", interval=0.5)
        worker = _start_node(two_hosts, two_hosts.worker, env, "--address", f"{two_hosts.head_ip}:{GCS_PORT}",
                             "--node-ip-address", two_hosts.worker_ip, "--num-cpus", "1")
        wait_for(lambda: _ray_nodes(two_hosts, env) == 2, 90, "the worker node to join", interval=0.5)
        config = {"serve": ["sentiment"],
                  "models": {"sentiment": {"source": str(tiny_models["sentiment"]), "num_cpus": 1}}}
        with running_server(config, tmp_path, env=env, ready=False, timeout=240, host=two_hosts.head_ip,
                            prefix=["ip", "netns", "exec", two_hosts.head],
                            arguments=["--engine", "ray", "--address", f"{two_hosts.head_ip}:{GCS_PORT}"]) as server:
            assert server.url.startswith(f"http://{two_hosts.head_ip}:")
            wait_for(lambda: _request(two_hosts, f"{server.url}/health/ready")[0] == 200, 60, "readiness", interval=0.5)
            texts = ["what a great film", "dull"]
            status, answer = _request(two_hosts, f"{server.url}/predict", {"model_name": "sentiment", "data": texts})
            assert status == 200, answer
            expected = modeldeploy.load("sentiment", str(tiny_models["sentiment"])).predict(texts)
            assert [r["label"] for r in answer["body"]] == [r["label"] for r in expected]
            assert [r["score"] for r in answer["body"]] == pytest.approx([r["score"] for r in expected], abs=1e-5)
            on_head = replica_pids("sentiment", among=two_hosts.pids(two_hosts.head))
            on_worker = replica_pids("sentiment", among=two_hosts.pids(two_hosts.worker))
            assert (len(on_head), len(on_worker)) == (0, 1), "the replica must run on the worker host"
    finally:
        for node in (worker, head):
            if node is not None:
                stop_group(node)
