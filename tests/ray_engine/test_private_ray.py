"""The private Ray that ``serve --engine ray`` starts: its HTTP proxy on the host asked for, and
nothing of it left once the command is stopped with SIGTERM."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from live_server import running_server, session_members
from waiting import wait_for

pytestmark = pytest.mark.slow


def test_sigterm_deletes_the_app_stops_ray_and_leaves_no_process(tiny_models: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    config = {"serve": ["sentiment"], "server": {"engine": "ray"},
              "models": {"sentiment": {"source": str(tiny_models["sentiment"])}}}
    with running_server(config, tmp_path, timeout=240) as server:
        port = server.url.rsplit(":", 1)[1]
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True)
        assert [line.split()[3] for line in listening.stdout.splitlines()] == [f"127.0.0.1:{port}"]
        assert len(session_members(server.pid)) > 5  # the GCS, a raylet, Serve's actors, the replicas
        server.process.terminate()
        assert server.process.wait(60) == 0
        wait_for(lambda: not session_members(server.pid), 30, "Ray's processes to exit", interval=0.5)
        assert "stopped" in server.output()
