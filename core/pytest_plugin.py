"""pytest fixtures for modeldeploy and its plugin authors.

Add ``pytest_plugins = ["modeldeploy.pytest_plugin"]`` to your top-level conftest.py to get
``tiny_models``: tiny real-architecture models built offline once per session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import testing


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One folder per task, ``{"sentiment": dir, "ner": dir, "summarization": dir, "embeddings": dir,
    "translation": dir}``, each loadable with ``from_pretrained``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return testing.build_all(tmp_path_factory.mktemp("models"), size="tiny")
