"""The layer contracts in pyproject.toml ([tool.importlinter]) hold: checked with import-linter.

import-linter reads the package from disk, and ``modeldeploy.app`` lives in ``app/`` (mapped by
``package-dir``), which an editable install does not place under ``modeldeploy``'s folder. So
the check runs on a tree of symlinks laid out as an installed package, built from the same
``package-dir`` mapping a wheel is built from.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def installed_layout(target: Path) -> Path:
    """Symlink ``modeldeploy`` and its mapped sub-packages under ``target`` as a wheel would lay them out."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(package_dir.items(), key=lambda item: item[0].count(".")):
        destination = target.joinpath(*package.split("."))
        destination.mkdir(parents=True, exist_ok=True)
        for child in (ROOT / folder).iterdir():
            link = destination / child.name
            if not link.exists():
                link.symlink_to(child, target_is_directory=child.is_dir())
    return target


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_layer_contracts_hold(tmp_path):
    tree = installed_layout(tmp_path / "site")
    assert (tree / "modeldeploy" / "app" / "__init__.py").exists()
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    # every contract in pyproject.toml was checked, none skipped
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert result.stdout.count(" KEPT") == len(contracts)


def test_an_upward_import_breaks_the_layer_contract(tmp_path):
    """Control: the contracts really see the tree (a store module importing the registry is caught)."""
    tree = installed_layout(tmp_path / "site")
    store = tree / "modeldeploy" / "store"
    store.unlink()
    store.mkdir()
    for child in (ROOT / "core" / "store").iterdir():
        (store / child.name).symlink_to(child)
    (store / "upward.py").write_text("from ..registry import Registry\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "modeldeploy.store.upward -> modeldeploy.registry" in result.stdout
