"""``/-/plugins.json`` (as datasette names it): the installed plugins, their versions and models,
and every plugin that failed to import or register, with why, so an operator sees over HTTP what
only ``modeldeploy list`` showed before. Read-only and open like ``/models``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from modeldeploy.plugins import Catalog

from .state import get_registry

blueprint = Blueprint("plugins_json", __name__)


@blueprint.get("/-/plugins.json")
def plugins_json() -> Response:
    return jsonify(describe_plugins(get_registry().catalog))


def describe_plugins(catalog: Catalog) -> dict[str, Any]:
    """Loaded plugins with their models, failed plugins with their error, and those left out."""
    models_of: dict[str, list[str]] = {}
    for name, entry in sorted(catalog.models.items()):
        models_of.setdefault(entry.plugin, []).append(name)
    plugins = [{"name": plugin, "distribution": distribution, "version": version,
                "models": models_of.get(plugin, [])}
               for plugin, (distribution, version) in sorted(catalog.plugins.items())]
    failed = [{"name": failure.plugin, "distribution": failure.distribution, "error": failure.error}
              for failure in catalog.failures]
    left_out = [{"name": plugin, "distribution": distribution}
                for plugin, distribution in sorted(catalog.filtered_out.items())]
    return {"plugins": plugins, "failed": failed, "left_out": left_out}
