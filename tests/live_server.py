"""Run the real ``modeldeploy serve`` process for end-to-end tests.

The server is a subprocess (``python -m modeldeploy serve --port 0``) bound to 127.0.0.1 on a
port the OS picks; the helper reads the real port from the line the command prints
(``modeldeploy listening on http://127.0.0.1:PORT``), waits for ``/health/ready`` if asked, and
always stops the process by its PID (SIGTERM, then SIGKILL if it lingers)::

    from live_server import running_server, tiny_models_config

    def test_something(tiny_models, tmp_path):
        config = tiny_models_config(tiny_models, server={"threads": 4})
        with running_server(config, tmp_path) as server:
            response = server.request("GET", "/predict", json={"model_name": "sentiment", "data": "hi"})
            assert response.status == 200, response.text
            assert server.output()  # everything the process printed, for assertions or debugging

``tests/`` is on ``sys.path`` (pytest's rootdir conftest), so ``import live_server`` works from
any test module under it. ``env`` adds environment variables (e.g. ``PYTHONPATH`` for extra
plugins); ``HF_HUB_OFFLINE=1`` is always set so nothing tries the network.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

LISTENING_PREFIX = "modeldeploy listening on "


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)


class LiveServer:
    """A running ``modeldeploy serve`` process and a tiny HTTP client for it."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.url = ""
        self._lines: list[str] = []
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)
            if line.startswith(LISTENING_PREFIX) and not self.url:
                self.url = line[len(LISTENING_PREFIX):].strip()
                self._listening.set()
        self._listening.set()  # the process ended: stop waiting

    def output(self) -> str:
        """Everything the process printed so far (stdout and stderr)."""
        return "".join(self._lines)

    def wait_listening(self, timeout: float) -> None:
        if not self._listening.wait(timeout) or not self.url:
            status = self.process.poll()
            raise RuntimeError(f"modeldeploy serve did not start listening (exit status {status}):\n{self.output()}")

    def wait_ready(self, timeout: float) -> None:
        """Poll ``/health/ready`` until it answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"modeldeploy serve exited with {self.process.returncode}:\n{self.output()}")
            if self.request("GET", "/health/ready").status == 200:
                return
            time.sleep(0.2)
        raise RuntimeError(f"models not ready after {timeout}s:\n{self.request('GET', '/health/ready').text}")

    def request(self, method: str, path: str, body: bytes | str | None = None, *, json: Any = None,
                headers: Mapping[str, str] | None = None, timeout: float = 60) -> Response:
        """One HTTP request; ``json=`` sends a JSON body with any method (GET included)."""
        if json is not None:
            body = jsonlib.dumps(json)
            headers = {"Content-Type": "application/json", **(headers or {})}
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            answer = connection.getresponse()
            return Response(answer.status, answer.headers, answer.read())
        finally:
            connection.close()

    def stop(self) -> int:
        """SIGTERM the process (SIGKILL after 30 s), then SIGKILL whatever is left in its session
        (a private Ray's workers have process groups of their own and ignore SIGTERM); return its
        exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
        for pid in session_members(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._reader.join(5)
        return self.process.returncode


def session_members(session: int) -> list[int]:
    """Processes of a session this helper started (``start_new_session``: its id is the leader's PID)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == session:
                    members.append(int(entry.name))
            except OSError:
                continue
    return members


def tiny_models_config(tiny_models: Mapping[str, Path], **extra: Any) -> dict[str, Any]:
    """A config document serving exactly the tiny models, each from its folder; ``extra`` adds top-level keys."""
    return {"models": {name: {"source": str(path)} for name, path in tiny_models.items()},
            "serve": sorted(tiny_models), **extra}


@contextmanager
def running_server(config: Mapping[str, Any], directory: Path, *, env: Mapping[str, str] | None = None,
                   ready: bool = True, timeout: float = 120, python: str | Path = sys.executable,
                   host: str = "127.0.0.1", prefix: Sequence[str] = (),
                   arguments: Sequence[str] = ()) -> Iterator[LiveServer]:
    """Write ``config`` to ``directory/config.yaml``, serve it, yield the server, always stop it.

    ``python`` is the interpreter that serves, e.g. another virtual environment's; ``prefix``
    runs the command through another (``ip netns exec NS``); ``arguments`` go to ``serve``.
    """
    config_path = Path(directory) / "config.yaml"
    config_path.write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
    command = [*prefix, str(python), "-m", "modeldeploy", "--log-level", "INFO", "serve",
               "--config", str(config_path), "--host", host, "--port", "0", *arguments]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=environment, cwd=directory, start_new_session=True)
    server = LiveServer(process)
    try:
        server.wait_listening(timeout)
        if ready:
            server.wait_ready(timeout)
        yield server
    finally:
        server.stop()
