"""Start, wait for and stop the servers under test (loopback only), and read their peak memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

PYTHON = sys.executable


#: Peers get the torch thread count modeldeploy chose, so the comparison isolates batching.
TORCH_THREADS_ENV = "BENCH_TORCH_THREADS"


def set_torch_threads() -> None:
    """In a peer's process: apply the harness's torch thread count, if it gave one."""
    import torch

    if os.environ.get(TORCH_THREADS_ENV):
        torch.set_num_threads(int(os.environ[TORCH_THREADS_ENV]))


def parse_setting(text: str) -> tuple[str, Any]:
    """A server setting from the command line, ``KEY=VALUE``, the value read as YAML (``0`` is a
    number, ``process`` a string)."""
    key, _, value = text.partition("=")
    return key, yaml.safe_load(value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server process run in its own session, so stopping it stops its workers too.

    Constructing one starts nothing (the harness describes a model's servers up front and measures
    each alone); :meth:`start` launches it, :meth:`wait_ready` waits for its health route.
    """

    #: Started and not yet stopped, so the harness can record what ran beside a measurement.
    running: set["Server"] = set()

    def __init__(self, label: str, command: list[str], port: int, health_path: str, log_dir: Path,
                 env: dict[str, str] | None = None) -> None:
        self.label, self.port, self.health_path = label, port, health_path
        self.url = f"http://127.0.0.1:{port}"
        self.command, self.log_path = command, log_dir / f"{label}.log"
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Server":
        if self.process is not None:
            raise RuntimeError(f"{self.label} was already started")
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
                                        start_new_session=True)
        Server.running.add(self)
        return self

    def wait_ready(self, timeout: float = 300) -> "Server":
        assert self.process is not None, "start() the server first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + self.health_path, timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.label} not ready after {timeout}s; see {self.log_path}")

    def pids(self) -> list[int]:
        """The server's process and all its descendants (LitServe runs its model in a child)."""
        assert self.process is not None, "start() the server first"
        return _tree(self.process.pid)

    def cpu_seconds(self) -> float:
        """User and system CPU seconds used so far by the server and its live descendants."""
        return sum(cpu_seconds(Path(f"/proc/{pid}/stat")) for pid in self.pids())

    def peak_memory_mb(self) -> float:
        """Peak resident memory (VmHWM) of the server and all its descendants."""
        assert self.process is not None, "start() the server first"
        return sum(_hwm_kb(pid) for pid in self.pids()) / 1024

    def stop(self) -> None:
        """Stop the server and every process of its session. Waits until the whole group is gone:
        LitServe's inference worker outlives its parent by more than 10 seconds once it has served
        requests, busy-polling a core, which would otherwise slow the next server measured; what
        is left 3 seconds after the server's own process exited is killed."""
        if self.process is None:
            return
        group = self.process.pid  # start_new_session: the leader's pid is the group id
        _signal_group(group, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 3
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(group):
            _signal_group(group, signal.SIGKILL)
        self.process.wait()
        self.log.close()
        Server.running.discard(self)


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


def _group_alive(group: int) -> bool:
    """Whether a live (not zombie) process of ``group`` remains."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def cpu_seconds(stat: Path) -> float:
    """utime + stime of a ``/proc/.../stat`` file (a process or one of its threads); 0 once gone."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            pids.extend(_tree(int(child)))
    return pids


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
