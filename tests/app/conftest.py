"""App fixtures: registries over the tiny models or the in-process ``echo`` plugin, and a live server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import echo_plugin
import pytest
from flask.testing import FlaskClient
from live_server import LiveServer, running_server, tiny_models_config

from modeldeploy_embeddings import EmbeddingsWrapper

from modeldeploy import plugins
from modeldeploy.app import create_app
from modeldeploy.config import parse_config
from modeldeploy.registry import Registry


def make_registry(document: dict[str, Any], start: bool = True) -> Registry:
    """A real registry over ``document`` (a config.yaml as a dict), loaded before it returns."""
    registry = Registry(parse_config(document))
    if start:
        registry.start(background=False)
    return registry


@pytest.fixture(scope="module")
def tiny_registry(tiny_models: dict[str, Path]) -> Iterator[Registry]:
    registry = make_registry(tiny_models_config(tiny_models))
    yield registry
    registry.close()


@pytest.fixture
def client(tiny_registry: Registry) -> FlaskClient:
    return create_app(registry=tiny_registry).test_client()


@pytest.fixture
def echo() -> Iterator[type]:
    """Register the ``echo`` plugin in this process; unblock its model afterwards."""
    echo_plugin.RELEASE.clear()
    echo_plugin.BLOCKED.clear()
    plugins.register_plugin(echo_plugin, name="echo")
    yield echo_plugin.EchoWrapper
    echo_plugin.RELEASE.set()


@pytest.fixture
def app_for() -> Iterator[Any]:
    """``app_for(document, start=True)`` -> (test client, registry); registries close afterwards."""
    registries: list[Registry] = []

    def build(document: dict[str, Any], start: bool = True) -> tuple[FlaskClient, Registry]:
        registry = make_registry(document, start)
        registries.append(registry)
        return create_app(registry=registry).test_client(), registry

    yield build
    echo_plugin.RELEASE.set()
    for registry in registries:
        registry.close()


#: Both engines serve the same HTTP contract, so every test of the live server runs on each; the
#: ray engine starts a private Ray cluster, so its run belongs to the slow suite.
ENGINES = ["local", pytest.param("ray", marks=pytest.mark.slow)]


@pytest.fixture(scope="session", params=ENGINES)
def tiny_server(request: pytest.FixtureRequest, tiny_models: dict[str, Path],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real ``modeldeploy serve`` over the tiny models, on each engine, shared by the end-to-end
    and browser tests; embeddings is the real all-MiniLM-L6-v2 (installed from PyPI), so its heat
    map means something.

    Sources are relative (``.models/NAME``, as ``scripts/run`` demos them) so that pages and
    screenshots show no path of the machine that ran the tests."""
    directory = tmp_path_factory.mktemp("serve")
    (directory / ".models").mkdir()
    folders = {**tiny_models, "embeddings": Path(EmbeddingsWrapper.default_source)}
    for name, path in folders.items():
        (directory / ".models" / name).symlink_to(path, target_is_directory=True)
    relative = {name: Path(".models") / name for name in tiny_models}
    config = tiny_models_config(relative, server={"engine": request.param})
    with running_server(config, directory) as server:
        yield server
