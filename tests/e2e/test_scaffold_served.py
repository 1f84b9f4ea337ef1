"""A plugin from ``modeldeploy new-plugin``, used the way its author would: pip-installed into a
fresh virtual environment, its generated tests run there, then served over HTTP from there.

The fresh venv sees the project's installed packages (torch, transformers, modeldeploy, pip and
setuptools) through a ``.pth`` file instead of downloading them, so the only thing installed into
it is the plugin. It is made ``--without-pip``: the pip and setuptools ``ensurepip`` bundles can be
older than the generated ``pyproject.toml`` needs (no ``bdist_wheel`` in setuptools 65), and
without build isolation they would shadow the project's.
Slow (a new venv, a pip build, a server): runs after the fast suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from live_server import running_server

from modeldeploy.scaffold import new_plugin
from modeldeploy.tasks import TASKS

pytestmark = pytest.mark.slow

NAME, TASK = "emotion", "text-classification"


def fresh_env(venv: Path) -> dict[str, str]:
    """The environment of a shell with ``venv`` activated, offline, with nothing of ours on PYTHONPATH."""
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return {**env, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv whose site-packages ends with this project's (a ``.pth`` runs ``site.addsitedir``)."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    purelib = subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    project_site = sysconfig.get_path("purelib")
    assert Path(purelib) != Path(project_site)
    (Path(purelib) / "modeldeploy-project-site.pth").write_text(f"import site; site.addsitedir({project_site!r})\n")
    return venv


@pytest.fixture(scope="module")
def plugin(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated plugin, pip-installed (not editable) into the fresh venv only."""
    folder = new_plugin(NAME, TASK, tmp_path_factory.mktemp("authoring"))
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                    "--no-build-isolation", str(folder)], check=True, timeout=300, env=fresh_env(venv))
    return folder


def test_the_plugin_is_installed_in_the_fresh_venv_alone(venv: Path, plugin: Path) -> None:
    where = subprocess.run([venv / "bin" / "python", "-c", "import modeldeploy_emotion; print(modeldeploy_emotion.__file__)"],
                           check=True, capture_output=True, text=True, env=fresh_env(venv)).stdout.strip()
    assert Path(where).is_relative_to(venv)
    mine = subprocess.run([sys.executable, "-c", "import modeldeploy_emotion"], capture_output=True, text=True)
    assert mine.returncode != 0, "the plugin leaked into the project's own environment"


def test_its_generated_tests_pass_in_the_fresh_venv(venv: Path, plugin: Path) -> None:
    result = subprocess.run([venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                            cwd=plugin, env=fresh_env(venv), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert "4 passed" in result.stdout.splitlines()[-1]


def test_the_fresh_venv_serves_it_over_http(venv: Path, plugin: Path, tmp_path: Path) -> None:
    weights = TASKS[TASK].demo_builder(tmp_path / "weights")
    config = {"serve": [NAME], "models": {NAME: {"source": str(weights)}}}
    with running_server(config, tmp_path, python=venv / "bin" / "python", env=fresh_env(venv)) as server:
        listed = server.request("GET", "/models").json()["models"]
        assert [model["name"] for model in listed] == [NAME]
        assert listed[0]["plugin"] == {"distribution": f"modeldeploy-{NAME}", "version": "0.1.0"}
        answer = server.request("POST", "/predict", json={"model_name": NAME, "data": "I love it"})
        assert answer.status == 200, answer.text
        result = answer.json()["body"]
        assert set(result) == {"label", "score"} and result["label"] in {"POSITIVE", "NEGATIVE"}
        assert 0.0 < result["score"] <= 1.0
    assert server.process.returncode is not None
