"""Store fixtures: a real fake-gcs-server per session, a fresh bucket per test, exported artifacts."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from gcs_emulator import Emulator

from modeldeploy import loading, store
from modeldeploy.store.cache import CACHE_DIR_ENV
from modeldeploy.store.gcs import RETRY_DEADLINE_ENV
from modeldeploy.store.manifest import build_manifest
from modeldeploy.store.signing import PREVIOUS_KEYS_ENV, SIGNING_KEY_ENV
from modeldeploy.store.streams import sha256_file

SIGNING_KEY = "test-signing-key-0123456789"
SAMPLES = {
    "sentiment": ["I love this movie", "This was a terrible waste of time"],
    "ner": ["Angela Merkel met Emmanuel Macron in Paris."],
    "summarization": ["The city council approved a plan to convert parking lots into public parks."],
}


@pytest.fixture(autouse=True)
def isolated_store_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No signing key or emulator from the developer's shell; caches under the test's tmp_path."""
    for variable in (SIGNING_KEY_ENV, PREVIOUS_KEYS_ENV, "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "default-cache"))


@pytest.fixture
def signing_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SIGNING_KEY_ENV, SIGNING_KEY)
    return SIGNING_KEY


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory):
    server = Emulator(tmp_path_factory.mktemp("gcs")).start()
    yield server
    server.stop()


@pytest.fixture
def gcs_store(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """``gs://<fresh bucket>/models`` on the emulator (STORAGE_EMULATOR_HOST set for this test)."""
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    monkeypatch.setenv(RETRY_DEADLINE_ENV, "5")
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    storage.Client().create_bucket(bucket)
    return f"gs://{bucket}/models"


@pytest.fixture(scope="session")
def exported(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """``exported(name, format)`` -> an unsigned artifact file (+ manifest) of that tiny model, made once."""
    folder = tmp_path_factory.mktemp("exports")
    made: dict[tuple[str, str], Path] = {}

    def export(name: str, format: str = "dill") -> Path:
        if (name, format) not in made:
            with pytest.MonkeyPatch.context() as patch:
                patch.delenv(SIGNING_KEY_ENV, raising=False)
                wrapper = loading.load(name, source=str(tiny_models[name]), device="cpu")
                path = folder / f"{name}{store.uri.EXTENSIONS[format]}"
                loading.export(wrapper, path, format)
            made[name, format] = path
        return made[name, format]

    return export


@pytest.fixture(scope="session")
def reference_predictions(tiny_models: dict[str, Path]):
    """What each tiny model predicts when loaded straight from its folder."""
    return {name: loading.load(name, source=str(tiny_models[name]), device="cpu").predict(SAMPLES[name])
            for name in SAMPLES}


def artifact_file(folder: Path, content: bytes, name: str = "sentiment") -> Path:
    """``folder/<name>.dill`` holding ``content`` with its (unsigned) manifest: a version to push
    and pull where no model needs to load (nothing here is ever unpickled)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.dill"
    path.write_bytes(content)
    manifest = build_manifest(name, "dill", *sha256_file(path))
    (folder / f"{name}.manifest.json").write_bytes(manifest.to_json())
    return path
