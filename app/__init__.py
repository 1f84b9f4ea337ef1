"""The Flask app over the modeldeploy core (see docs/architecture.md).

``create_app(config)`` builds the app from blueprints, each in its own module. The app never
imports torch or a plugin: it asks the :class:`~modeldeploy.registry.Registry` for statuses and
results, so another backend could stand behind the same routes.
"""

from __future__ import annotations

from flask import Flask

from modeldeploy.config import Config, load_config
from modeldeploy.registry import Registry

from . import errors, json_api, observability, oip, openapi, pages, plugins_json, repository
from .admission import AdmissionGate
from .state import attach_registry, get_registry

__all__ = ["create_app", "get_registry"]

#: Every blueprint the app serves; add new ones here (the single place routes are registered).
BLUEPRINTS = (pages.blueprint, json_api.blueprint, oip.blueprint, repository.blueprint, plugins_json.blueprint,
              observability.blueprint, openapi.blueprint)


def create_app(config: Config | None = None, registry: Registry | None = None) -> Flask:
    """Build the app over ``registry``, or over a new one made from ``config`` (default: every
    installed model) that starts loading in the background, so the server answers (with
    per-model statuses) while the models load. A registry brings its own config: passing both
    is an error rather than one of them being silently ignored."""
    if registry is not None and config is not None:
        raise TypeError("create_app() takes a config or a registry (which has its config), not both")
    if registry is None:
        registry = Registry(config if config is not None else load_config(None))
        registry.start()
    app = Flask(__name__)
    # Flask's own body limit, read by werkzeug; derived from the registry's config, never set apart from it
    app.config["MAX_CONTENT_LENGTH"] = registry.config.server.max_body_bytes
    app.json.sort_keys = False
    attach_registry(app, registry)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    errors.register(app)
    observability.register(app)
    # before Flask runs, so a refusal costs a fraction of an answer
    app.wsgi_app = AdmissionGate(app.wsgi_app, registry)  # type: ignore[method-assign]
    return app
