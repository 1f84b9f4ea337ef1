"""Where the app keeps its registry, so blueprints reach it through ``current_app``.

Everything an app needs lives in its ``app.extensions`` (flaskr style): two apps in one process
share nothing mutable.
"""

from __future__ import annotations

from flask import Flask, current_app

from modeldeploy.registry import Registry

_KEY = "modeldeploy.registry"


def attach_registry(app: Flask, registry: Registry) -> None:
    app.extensions[_KEY] = registry


def get_registry() -> Registry:
    """The registry of the app handling the current request."""
    return current_app.extensions[_KEY]


def max_items() -> int:
    """``server.max_items`` of the app handling the current request (one source: its config)."""
    return get_registry().config.server.max_items
