"""The app ``modeldeploy serve`` builds, for granian to serve (``bench/ab.py --front-after granian``).

Built as ``modeldeploy serve`` builds it on the local engine, from the config file named by
``BENCH_CONFIG``: the same registry (which sets torch's threads), logging and Flask app (admission
gate included), so the two servers differ only in the HTTP server under the app. Models load before granian takes
requests (``/health/ready`` answers once they have).
"""

from __future__ import annotations

import os

from modeldeploy.app import create_app
from modeldeploy.config import load_config
from modeldeploy.logs import configure_logging, default_log_format
from modeldeploy.plugins import get_catalog
from modeldeploy.registry import Registry

configure_logging("WARNING", default_log_format())
_config = load_config(os.environ["BENCH_CONFIG"], get_catalog().wrapper_classes())
_registry = Registry(_config)
_registry.start(background=False)
app = create_app(registry=_registry)
