"""Loading that heals and never holds a model back: concurrent loads, a load timeout, retries."""

from __future__ import annotations

import random
import shutil
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from waiting import wait_for

import modeldeploy
from modeldeploy import ModelWrapper, plugins
from modeldeploy.config import parse_config
from modeldeploy.registry import FAILED, LOADING, READY, Registry
from modeldeploy.retrying import Backoff
from modeldeploy.store.gcs import RETRY_DEADLINE_ENV

#: What each test model's ``load`` runs first, set per test (by model name).
LOAD_HOOKS: dict[str, Callable[[], None]] = {}


class HookedWrapper(ModelWrapper):
    """A weightless model whose load runs the hook a test sets for it."""

    task = "echo"
    default_source = "nowhere"

    def load(self, source: str, device: str) -> None:
        LOAD_HOOKS.get(self.name, lambda: None)()
        self.model = "loaded"

    def token_lengths(self, texts: list[str]) -> list[int]:
        return [len(text) for text in texts]

    def predict_batch(self, items: list[str]) -> list[Any]:
        return [{"model": self.name, "length": len(text)} for text in items]


class Alpha(HookedWrapper):
    name = "alpha"


class Beta(HookedWrapper):
    name = "beta"


class HookedPlugin:
    @modeldeploy.hookimpl
    def register_models(self, register):
        register(Alpha)
        register(Beta)


@pytest.fixture
def hooked_registry(tmp_path):
    """Build a Registry over the alpha/beta test models (their source: an empty folder); closes it
    and clears the hooks afterwards."""
    plugins.register_plugin(HookedPlugin(), name="hooked")
    made: list[Registry] = []

    def build(models: dict[str, Any] | None = None, **server: Any) -> Registry:
        models = {name: {"source": str(tmp_path), **(models or {}).get(name, {})} for name in ("alpha", "beta")}
        config = {"serve": ["alpha", "beta"], "models": models, "server": server}
        made.append(Registry(parse_config(config, list(plugins.get_catalog().models))))
        return made[-1]

    yield build
    for registry in made:
        registry.close()
    LOAD_HOOKS.clear()


@pytest.fixture
def silent_bucket(monkeypatch):
    """A GCS endpoint on loopback that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.setenv(RETRY_DEADLINE_ENV, "120")
    yield
    listener.close()
    for connection in held:
        connection.close()


def test_a_model_stuck_fetching_from_its_bucket_does_not_hold_back_the_others(tiny_models, silent_bucket):
    config = {"serve": ["ner", "sentiment"],  # ner, first in order, fetches from a bucket that never answers
              "models": {"ner": {"source": "gs://silent/models/ner.dill", "load_timeout": 60},
                         "sentiment": {"source": str(tiny_models["sentiment"])}}}
    registry = Registry(parse_config(config))
    try:
        registry.start()
        wait_for(lambda: registry.status("sentiment").state == READY, timeout=60)
        assert registry.status("ner").state == LOADING  # still waiting on its bucket: loaded side by side
        assert registry.predict("sentiment", "I love it")["label"] in {"POSITIVE", "NEGATIVE"}
    finally:
        registry.close()


def test_a_hung_load_is_abandoned_after_its_timeout_and_holds_no_other_model(hooked_registry):
    unblock = threading.Event()
    LOAD_HOOKS["alpha"] = lambda: unblock.wait(60)
    registry = hooked_registry({"alpha": {"load_timeout": 0.5}}, load_retry_seconds=30)
    registry.start()
    assert registry.wait_until_loaded(timeout=20)
    status = registry.status("alpha")
    assert status.state == FAILED
    assert status.reason == ("loading did not finish within models.alpha.load_timeout (0.5 s); "
                             "that attempt was abandoned")
    assert status.attempts == 1 and 20 < status.retry_in() <= 36
    assert registry.predict("beta", "hello") == {"model": "beta", "length": 5}
    unblock.set()  # the abandoned attempt finishes late: its result must not be served
    time.sleep(0.3)
    assert registry.status("alpha").state == FAILED and registry.wrapper("alpha") is None
    batchers = [t.name for t in threading.enumerate() if t.name == "modeldeploy-batcher-alpha"]
    assert batchers == []  # the late attempt's inference thread was stopped, not leaked


def test_a_failed_load_is_retried_with_backoff_until_its_source_comes_back(hooked_registry):
    mounted = threading.Event()

    def load_when_mounted() -> None:
        if not mounted.is_set():
            raise OSError("source folder /mnt/models/alpha is not mounted yet")

    LOAD_HOOKS["alpha"] = load_when_mounted
    registry = hooked_registry(load_retry_seconds=0.2, load_retry_max_seconds=0.4)
    registry.start()
    wait_for(lambda: registry.status("alpha").attempts >= 3)
    status = registry.status("alpha")
    assert status.state in (FAILED, LOADING) and "is not mounted yet" in status.reason
    mounted.set()
    wait_for(lambda: registry.status("alpha").state == READY)
    assert registry.status("alpha").retry_at is None and registry.status("alpha").reason is None
    assert registry.predict("alpha", "back") == {"model": "alpha", "length": 4}


def test_a_real_model_folder_that_appears_late_is_served_without_a_restart(tiny_models, tmp_path):
    late = tmp_path / "mounted-late"
    config = {"serve": ["sentiment"], "models": {"sentiment": {"source": str(late)}},
              "server": {"load_retry_seconds": 0.2, "load_retry_max_seconds": 0.5}}
    registry = Registry(parse_config(config))
    try:
        registry.start(background=False)
        failed = registry.status("sentiment")
        assert failed.state == FAILED and failed.retry_at is not None
        assert failed.as_dict()["next_retry_in_seconds"] in (0, 1)
        assert failed.as_dict()["next_retry_at"].endswith("+00:00")
        shutil.copytree(tiny_models["sentiment"], late)
        wait_for(lambda: registry.status("sentiment").state == READY, timeout=120)
        assert registry.predict("sentiment", "I love it")["label"] in {"POSITIVE", "NEGATIVE"}
    finally:
        registry.close()


def test_close_stops_retrying(hooked_registry):
    attempts: list[float] = []

    def always_fail() -> None:
        attempts.append(time.monotonic())
        raise OSError("bucket unreachable")

    LOAD_HOOKS["alpha"] = always_fail
    registry = hooked_registry(load_retry_seconds=0.1, load_retry_max_seconds=0.1)
    registry.start()
    wait_for(lambda: len(attempts) >= 2)
    registry.close()
    time.sleep(0.1)
    made = len(attempts)
    time.sleep(0.5)
    assert len(attempts) == made


def test_backoff_doubles_up_to_its_cap_within_its_jitter():
    backoff = Backoff(initial=5, maximum=300, jitter=0.2)
    rng = random.Random(7)
    for attempt, base in [(1, 5), (2, 10), (3, 20), (7, 300), (60, 300), (10_000, 300)]:
        delay = backoff.delay(attempt, rng)
        assert base * 0.8 <= delay <= base * 1.2, (attempt, delay)
    assert Backoff(initial=1, maximum=8, jitter=0).delay(4) == 8


def test_real_models_loading_at_the_same_time_are_all_built_whole(tiny_models):
    """transformers builds models under process-global patches, so the builds must not overlap:
    without loading.BUILD_TURN one model here gets another's meta tensors and fails to load."""
    config = {"serve": sorted(tiny_models), "models": {name: {"source": str(path)} for name, path in tiny_models.items()}}
    for _ in range(2):
        registry = Registry(parse_config(config))
        try:
            registry.start(background=False)
            assert {name: registry.status(name).reason for name in tiny_models} == dict.fromkeys(tiny_models)
            assert registry.predict("summarization", "The council approved the park plan.")["summary_text"]
        finally:
            registry.close()
