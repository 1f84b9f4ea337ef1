"""Plugin discovery through real entry points, the allow-list and broken plugins."""

from __future__ import annotations

import types

import pytest

import modeldeploy
from modeldeploy import plugins

INSTALLED = {"sentiment", "ner", "summarization"}


def test_installed_plugins_are_discovered_with_their_distribution():
    catalog = plugins.get_catalog(refresh=True)
    assert INSTALLED <= set(catalog.models)
    entry = catalog.models["sentiment"]
    assert entry.distribution == "modeldeploy-sentiment"
    assert entry.version == "0.1.0"
    assert modeldeploy.list_models() == sorted(catalog.models)


def test_pip_installed_plugin_appears_and_predicts(with_extra_plugins):
    assert "wordcount" in modeldeploy.list_models()
    entry = plugins.get_catalog().models["wordcount"]
    assert (entry.distribution, entry.version) == ("modeldeploy-wordcount", "1.2.3")
    assert modeldeploy.load("wordcount").predict(["one two", "a b c d"]) == [{"words": 2}, {"words": 4}]


def test_broken_plugin_is_reported_and_others_still_work(with_extra_plugins):
    catalog = plugins.get_catalog()
    failure = next(f for f in catalog.failures if f.plugin == "broken")
    assert failure.distribution == "modeldeploy-broken"
    assert "ImportError" in failure.error and "not installed" in failure.error
    assert {"wordcount", "sentiment"} <= set(catalog.models)


def test_plugin_calling_sys_exit_on_import_is_reported_not_fatal(with_extra_plugins):
    catalog = plugins.get_catalog()  # SystemExit would end the test run here if it escaped
    failure = next(f for f in catalog.failures if f.plugin == "exits")
    assert failure.distribution == "modeldeploy-exits"
    assert failure.error == "failed to import: the plugin called sys.exit(3)"
    assert "wordcount" in catalog.models


def test_plugin_calling_sys_exit_while_registering_is_reported():
    class Quitter:
        @modeldeploy.hookimpl
        def register_models(self, register):
            raise SystemExit("bye")

    plugins.register_plugin(Quitter(), name="quitter")
    failure = next(f for f in plugins.get_catalog().failures if f.plugin == "quitter")
    assert failure.error == "failed to register: the plugin called sys.exit('bye')"
    assert "sentiment" in plugins.get_catalog().models


def test_allow_list_loads_only_named_plugins(with_extra_plugins, monkeypatch):
    monkeypatch.setenv(plugins.ALLOW_LIST_ENV, "wordcount, modeldeploy-sentiment")
    catalog = plugins.get_catalog(refresh=True)
    assert set(catalog.models) == {"wordcount", "sentiment"}
    assert catalog.failures == []  # the broken plugin was never imported


def test_empty_allow_list_loads_none(monkeypatch):
    monkeypatch.setenv(plugins.ALLOW_LIST_ENV, "")
    plugins.get_catalog(refresh=True)
    assert modeldeploy.list_models() == []


def test_autoload_can_be_disabled_but_local_plugins_still_register(monkeypatch):
    monkeypatch.setenv(plugins.DISABLE_AUTOLOAD_ENV, "1")
    assert plugins.get_catalog(refresh=True).models == {}

    class Shout(modeldeploy.ModelWrapper):
        name = "shout"

        def load(self, source, device):
            self.model = str.upper

        def predict_batch(self, items):
            return [self.model(t) for t in items]

    local = types.SimpleNamespace(register_models=modeldeploy.hookimpl(lambda register: register(Shout)))
    plugins.register_plugin(local, name="local-shout")
    assert modeldeploy.list_models() == ["shout"]
    assert modeldeploy.load("shout").predict("hi") == "HI"


@pytest.mark.parametrize(
    "registered, message",
    [
        (int, "expects a ModelWrapper subclass"),
        (type("NoName", (modeldeploy.ModelWrapper,), {}), "must be a lowercase identifier"),
        (type("BadName", (modeldeploy.ModelWrapper,), {"name": "Has Space"}), "must be a lowercase identifier"),
        (type("Newline", (modeldeploy.ModelWrapper,), {"name": "name\n"}), "must be a lowercase identifier"),
    ],
)
def test_invalid_registrations_are_recorded_not_raised(monkeypatch, registered, message):
    monkeypatch.setenv(plugins.DISABLE_AUTOLOAD_ENV, "1")
    bad = types.SimpleNamespace(register_models=modeldeploy.hookimpl(lambda register: register(registered)))
    plugins.register_plugin(bad, name="bad")
    failure = plugins.get_catalog().failures[0]
    assert failure.plugin == "bad" and message in failure.error


def test_duplicate_model_names_keep_the_first(monkeypatch):
    monkeypatch.setenv(plugins.ALLOW_LIST_ENV, "sentiment")
    copy = type("Copy", (modeldeploy.ModelWrapper,), {"name": "sentiment"})
    plugins.register_plugin(types.SimpleNamespace(register_models=modeldeploy.hookimpl(lambda register: register(copy))),
                            name="copycat")
    catalog = plugins.get_catalog()
    assert catalog.models["sentiment"].wrapper_class is not copy
    assert any("already registered" in f.error for f in catalog.failures)


def test_unknown_model_lists_available_names():
    with pytest.raises(modeldeploy.UnknownModelError) as info:
        modeldeploy.load("nope")
    assert isinstance(info.value, LookupError)
    assert f"available models: {', '.join(plugins.list_models())}" in str(info.value)
    assert {"embeddings", "ner", "sentiment", "summarization", "translation"} <= set(plugins.list_models())
