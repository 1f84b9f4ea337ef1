"""The Flask app over the modeldeploy core (see docs/architecture.md).

``create_app(config)`` builds the app from blueprints, each in its own module. The app never
imports torch or a plugin: it asks the :class:`~modeldeploy.registry.Registry` for statuses and
results, so another backend could stand behind the same routes.
"""

from __future__ import annotations

from flask import Flask

from modeldeploy.config import Config, load_config
from modeldeploy.registry import Registry

from . import api, errors, observability, oip, openapi, pages
from .state import attach_registry, get_registry

__all__ = ["create_app", "get_registry"]

#: Every blueprint the app serves; add new ones here (the single place routes are registered).
BLUEPRINTS = (pages.blueprint, api.blueprint, oip.blueprint, observability.blueprint, openapi.blueprint)


def create_app(config: Config | None = None, registry: Registry | None = None) -> Flask:
    """Build the app. Without ``registry``, one is made from ``config`` and starts loading in
    the background: the server answers (with per-model statuses) while the models load."""
    if registry is None:
        registry = Registry(config if config is not None else load_config(None))
        registry.start()
    config = registry.config
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_body_bytes
    app.config["MODELDEPLOY_MAX_ITEMS"] = config.server.max_items
    app.json.sort_keys = False
    attach_registry(app, registry)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    errors.register(app)
    observability.register(app)
    return app
