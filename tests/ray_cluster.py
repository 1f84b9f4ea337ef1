"""Helpers for the ray engine's cluster tests (tests/ray_engine): its replicas' processes, and two
hosts in network namespaces. ``tests/`` is on ``sys.path``, so ``import ray_cluster`` works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def replica_pids(deployment: str, among: set[int] | None = None, session: int | None = None) -> set[int]:
    """PIDs of the live replica processes of ``deployment`` (Ray titles them
    ``ray::ServeReplica:APP:NAME``), of one server's session or ``among`` some PIDs: other Ray
    clusters of the test session (a session-scoped server) may serve a model of the same name."""
    wanted = f"ray::ServeReplica:modeldeploy:{deployment}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (among is not None and int(entry.name) not in among):
            continue
        try:
            pid = int(entry.name)
            if ((entry / "cmdline").read_bytes().split(b"\0")[0] == wanted and _alive(pid)
                    and (session is None or os.getsid(pid) == session)):
                found.add(pid)
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


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

    def pids(self, namespace: str) -> set[int]:
        """The processes running in one of the two hosts."""
        listed = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False)
        return {int(pid) for pid in listed.stdout.split()}
