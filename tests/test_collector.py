"""A server's loaded models stay out of the cyclic collector's walks, and a retired version is
still freed; a process that did not ask (a notebook, this test run) freezes nothing."""

import gc
import logging
import threading
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


def test_a_swap_keeps_no_reference_to_the_version_it_retires(enabled, tiny_models, monkeypatch):
    """The retiring thread may free the old version before load_model has returned: load_model's
    frame must not hold it then (a local did, and the version stayed frozen in its cycle)."""
    registry = sentiment_registry(tiny_models)
    retired = in_a_cycle(registry)
    monkeypatch.setattr(collector, "RETRY_DELAYS", ())
    tried, free = threading.Event(), collector.free_retired

    def free_then_tell(wrapper: weakref.ref) -> bool:
        try:
            return free(wrapper)
        finally:
            tried.set()

    start_retiring = Registry._retire_in_background

    def retire_before_returning(retiring: list, timeout: float) -> None:
        start_retiring(retiring, timeout)
        assert tried.wait(30)

    monkeypatch.setattr(collector, "free_retired", free_then_tell)
    monkeypatch.setattr(Registry, "_retire_in_background", staticmethod(retire_before_returning))
    registry.load_model("sentiment")
    assert retired() is None
    registry.close()


class Node:
    """An object that can be put in a reference cycle."""


def test_a_retired_version_let_go_after_a_collection_is_freed_by_the_next(enabled, monkeypatch):
    node = Node()
    node.itself = node
    retired, held = weakref.ref(node), [node]
    del node
    collector.freeze_survivors()
    freeze = gc.freeze

    def freeze_then_let_go() -> None:  # another thread's last reference ends just after the first try
        freeze()
        held.clear()

    monkeypatch.setattr(gc, "freeze", freeze_then_let_go)
    assert collector.free_retired(retired)
    assert retired() is None


def test_a_retired_version_held_for_good_is_tried_again_then_logged(enabled, monkeypatch, caplog):
    monkeypatch.setattr(collector, "RETRY_DELAYS", (0.01, 0.02))
    kept = Node()
    collector.freeze_survivors()
    thaws = []
    unfreeze = gc.unfreeze
    monkeypatch.setattr(gc, "unfreeze", lambda: (thaws.append(True), unfreeze()))
    with caplog.at_level(logging.WARNING):
        assert collector.free_retired(weakref.ref(kept))
    assert len(thaws) == 3
    assert "Node object" in caplog.text and "still alive 0.03 s after it was retired" in caplog.text
