"""The start-up probe that turns an unreachable hub into fast, clear load failures (loopback only)."""

from __future__ import annotations

import os
import socket

import pytest

from modeldeploy import hub


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed once the socket is: nothing listens there


def test_reachable_only_when_something_listens(closed_port):
    assert hub.hub_reachable(f"http://127.0.0.1:{closed_port}", timeout=2) is False
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert hub.hub_reachable(f"http://127.0.0.1:{listening.getsockname()[1]}", timeout=2) is True


def test_unreachable_hub_switches_to_offline_mode(closed_port, monkeypatch):
    monkeypatch.delenv(hub.OFFLINE_ENV, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    assert hub.go_offline_if_unreachable() is True
    assert os.environ[hub.OFFLINE_ENV] == "1"


def test_an_explicit_setting_is_kept_without_probing(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://192.0.2.1:9")  # never contacted: the setting wins
    monkeypatch.setattr(hub, "hub_reachable", lambda *args, **kwargs: pytest.fail("probed"))
    monkeypatch.setenv(hub.OFFLINE_ENV, "0")
    assert hub.go_offline_if_unreachable() is False
    monkeypatch.setenv(hub.OFFLINE_ENV, "1")
    assert hub.go_offline_if_unreachable() is True
