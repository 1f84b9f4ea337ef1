"""The Serve application built from a config file, for Ray's own deployment tools.

``modeldeploy serve --engine ray`` builds and deploys the application itself. A KubeRay
``RayService`` (or ``serve deploy``) instead names an import path and arguments in its Serve
config and builds the application on the cluster; this is that import path::

    import_path: modeldeploy.ray_engine.builder:app_builder
    args: {config: /etc/modeldeploy/config.yaml, log_level: INFO, log_format: json}

Ray then owns the HTTP proxy and rolls deployments over on a config change.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from ..config import load_config
from ..logs import LogSettings, default_log_format
from ..plugins import get_catalog
from ..registry import Registry
from .deployments import build_application


def app_builder(args: dict[str, Any]) -> Application:
    """The application for the config file ``args["config"]`` (default: every installed model)."""
    catalog = get_catalog()
    config = load_config(args.get("config"), catalog.wrapper_classes())
    names = Registry(config, catalog).names  # checks that every configured model is installed
    settings = LogSettings(str(args.get("log_level", "INFO")), str(args.get("log_format") or default_log_format()))
    return build_application(config, names, settings)
