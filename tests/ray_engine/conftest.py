"""The ``two_hosts`` fixture. Every test here starts its own Ray (a private one through
``modeldeploy serve --engine ray``, or a head and a worker node in two network namespaces) and
stops it; the helpers are in ``tests/ray_cluster.py``."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Iterator

import pytest
from ray_cluster import TwoHosts


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True, text=True)


@pytest.fixture()
def two_hosts() -> Iterator[TwoHosts]:
    """A head and a worker host of this test's own (names unique to this run), removed afterwards."""
    tag = secrets.token_hex(3)
    hosts = TwoHosts(head=f"md-head-{tag}", worker=f"md-work-{tag}")
    head_end, worker_end = f"mdh{tag}", f"mdw{tag}"
    _ip("netns", "add", hosts.head)
    try:
        _ip("netns", "add", hosts.worker)
        _ip("link", "add", head_end, "type", "veth", "peer", "name", worker_end)
        _ip("link", "set", head_end, "netns", hosts.head)
        _ip("link", "set", worker_end, "netns", hosts.worker)
        for namespace, end, address in ((hosts.head, head_end, hosts.head_ip),
                                        (hosts.worker, worker_end, hosts.worker_ip)):
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", end)
            _ip("-n", namespace, "link", "set", end, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
        yield hosts
    finally:
        for namespace in (hosts.head, hosts.worker):
            _kill_everything_in(hosts, namespace)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


def _kill_everything_in(hosts: TwoHosts, namespace: str) -> None:
    """SIGKILL what still runs in a namespace of this test's own (Ray workers outlive their raylet)."""
    for pid in hosts.pids(namespace):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
