"""Project fixtures: installed test plugins and an isolated plugin catalog per test.

``tiny_models`` comes from modeldeploy.pytest_plugin (loaded by the root conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modeldeploy import plugins


FIXTURE_PLUGINS = Path(__file__).parent / "fixtures" / "plugins"


@pytest.fixture(scope="session")
def extra_plugins_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where the test plugins ``modeldeploy-wordcount``, ``modeldeploy-broken`` (fails to
    import) and ``modeldeploy-exits`` (calls ``sys.exit()`` on import) are really pip-installed (``--target``); put it on sys.path or PYTHONPATH to discover them."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(FIXTURE_PLUGINS / "wordcount"), str(FIXTURE_PLUGINS / "broken"),
         str(FIXTURE_PLUGINS / "exits")],
        check=True,
    )
    return target


@pytest.fixture
def with_extra_plugins(extra_plugins_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the installed test plugins discoverable in this process for one test."""
    monkeypatch.syspath_prepend(str(extra_plugins_path))
    plugins.get_catalog(refresh=True)
    return extra_plugins_path


@pytest.fixture(autouse=True)
def fresh_catalog(monkeypatch: pytest.MonkeyPatch):
    """Every test discovers plugins anew, under its own environment switches."""
    monkeypatch.delenv(plugins.ALLOW_LIST_ENV, raising=False)
    monkeypatch.delenv(plugins.DISABLE_AUTOLOAD_ENV, raising=False)
    plugins.get_catalog(refresh=True)
    yield
    plugins._local_plugins.clear()
    plugins.get_catalog(refresh=True)
