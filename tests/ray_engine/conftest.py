"""Helpers for the ray engine's cluster tests: its replicas' processes, and hosts in network namespaces.

Every test here starts its own Ray (a private one through ``modeldeploy serve --engine ray``, or
a head and a worker node in two network namespaces) and stops it, process group by process group.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

RAY = str(Path(sys.executable).with_name("ray"))


def replica_pids(deployment: str) -> set[int]:
    """PIDs of the live replica processes of ``deployment`` (Ray titles them ``ray::ServeReplica:APP:NAME``)."""
    wanted = f"ray::ServeReplica:modeldeploy:{deployment}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cmdline").read_bytes().split(b"\0")[0] == wanted and _alive(int(entry.name)):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def wait_for(condition, timeout: float, what: str):  # noqa: ANN001, ANN201 - a test helper
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process started in its own session and everything in its group; SIGKILL what lingers."""
    for signum, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue


@dataclass(frozen=True)
class TwoHosts:
    """Two network namespaces joined by a veth pair: ``head`` at 10.123.0.1, ``worker`` at 10.123.0.2."""

    head: str
    worker: str
    head_ip: str = "10.123.0.1"
    worker_ip: str = "10.123.0.2"

    def run(self, namespace: str, *command: str, **kwargs) -> subprocess.CompletedProcess[str]:  # noqa: ANN003
        return subprocess.run(["ip", "netns", "exec", namespace, *command], capture_output=True, text=True,
                              check=False, **kwargs)


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
            _kill_everything_in(namespace)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


def _kill_everything_in(namespace: str) -> None:
    """SIGKILL what still runs in a namespace of this test's own (Ray workers outlive their raylet)."""
    listed = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False)
    for pid in listed.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
