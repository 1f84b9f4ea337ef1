"""Shared fixtures: tiny offline models built once per session, and an isolated plugin catalog."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from modeldeploy import plugins, testing  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"sentiment": dir, "ner": dir, "summarization": dir}`` of tiny real-architecture models."""
    return testing.build_all(tmp_path_factory.mktemp("models"), size="tiny")


@pytest.fixture(autouse=True)
def fresh_catalog(monkeypatch: pytest.MonkeyPatch):
    """Every test discovers plugins anew, under its own environment switches."""
    monkeypatch.delenv(plugins.ALLOW_LIST_ENV, raising=False)
    monkeypatch.delenv(plugins.DISABLE_AUTOLOAD_ENV, raising=False)
    plugins.get_catalog(refresh=True)
    yield
    plugins._local_plugins.clear()
    plugins.get_catalog(refresh=True)
