"""A server's loaded models stay out of the cyclic collector's walks, and a retired version is
still freed; a process that did not ask (a notebook, this test run) freezes nothing."""

import gc
import time
import weakref

import pytest

from modeldeploy import collector
from modeldeploy.config import parse_config
from modeldeploy.registry import Registry


@pytest.fixture
def enabled(monkeypatch):
    """Freezing on, as in a server; off again and everything thawed afterwards."""
    unfreeze = gc.unfreeze  # a test may stand in for it
    monkeypatch.setattr(collector, "_enabled", False)
    collector.enable()
    yield
    unfreeze()


def tracked(obj: object) -> bool:
    """Whether a collection walks ``obj`` (frozen objects are in no generation)."""
    return any(candidate is obj for candidate in gc.get_objects())


def sentiment_registry(tiny_models) -> Registry:
    registry = Registry(parse_config({"models": {"sentiment": {"source": str(tiny_models["sentiment"])}},
                                      "serve": ["sentiment"]}))
    registry.start(background=False)
    return registry


def in_a_cycle(registry: Registry) -> weakref.ref:
    """A weak reference to the serving wrapper, after making it part of a reference cycle (as a
    plugin's own attributes might): only the cyclic collector can free it."""
    wrapper = registry.model("sentiment").batcher.wrapper
    wrapper.itself = wrapper
    return weakref.ref(wrapper)


def test_nothing_is_frozen_unless_the_process_asked(tiny_models, monkeypatch):
    monkeypatch.setattr(collector, "_enabled", False)
    registry = sentiment_registry(tiny_models)
    assert tracked(registry.model("sentiment").batcher.wrapper)
    assert gc.get_freeze_count() == 0
    registry.close()


def test_freezing_collects_the_garbage_first(enabled):
    class Node:
        pass

    garbage, kept = Node(), Node()
    garbage.itself = garbage
    dead = weakref.ref(garbage)
    del garbage
    assert collector.freeze_survivors()
    assert dead() is None  # collected, not frozen with the survivors
    assert not tracked(kept)
    assert tracked(Node())  # made after the freeze: collections still see it


def test_a_loaded_model_is_out_of_the_collectors_walks(enabled, tiny_models):
    registry = sentiment_registry(tiny_models)
    wrapper = registry.model("sentiment").batcher.wrapper
    assert not tracked(wrapper) and not tracked(wrapper.model)
    assert registry.predict("sentiment", "I love it")["label"] in {"POSITIVE", "NEGATIVE"}
    registry.close()


def test_a_retired_model_freed_by_its_reference_counts_costs_no_thaw(enabled, tiny_models, monkeypatch):
    registry = sentiment_registry(tiny_models)
    retired = weakref.ref(registry.model("sentiment").batcher.wrapper)
    thawed = []
    monkeypatch.setattr(gc, "unfreeze", lambda: thawed.append(True))
    registry.unload_model("sentiment")
    assert retired() is None and thawed == []


def test_an_unloaded_model_in_a_reference_cycle_is_freed(enabled, tiny_models):
    registry = sentiment_registry(tiny_models)
    retired = in_a_cycle(registry)
    gc.collect()
    assert retired() is not None  # frozen, and serving
    registry.unload_model("sentiment")
    gc.collect()
    assert retired() is None  # thawed once retired, so the cycle was collected
    registry.close()


def test_a_replaced_version_in_a_reference_cycle_is_freed(enabled, tiny_models):
    registry = sentiment_registry(tiny_models)
    retired = in_a_cycle(registry)
    registry.load_model("sentiment")  # a new version swapped in; the old one retires in the background
    deadline = time.monotonic() + 30
    while retired() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
        gc.collect()
    assert retired() is None
    assert registry.predict("sentiment", "I love it")["label"] in {"POSITIVE", "NEGATIVE"}
    registry.close()
