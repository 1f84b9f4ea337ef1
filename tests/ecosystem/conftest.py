"""One real ``modeldeploy serve`` process for the ecosystem tests (OIP client, OpenAPI, metrics).

It is shared by the whole session because every test here only reads the server or sends it
independent requests; it logs in JSON so the access-log tests read structured lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import LiveServer, running_server, tiny_models_config


@pytest.fixture(scope="session", params=["local", pytest.param("ray", marks=pytest.mark.slow)])
def ecosystem_server(request: pytest.FixtureRequest, tiny_models: dict[str, Path],
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """On each engine (the ray engine's private cluster belongs to the slow suite)."""
    config = tiny_models_config(tiny_models, server={"max_items": 16, "engine": request.param})
    with running_server(config, tmp_path_factory.mktemp("ecosystem"), env={"MODELDEPLOY_LOG_FORMAT": "json"}) as server:
        yield server
