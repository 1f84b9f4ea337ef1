"""``modeldeploy serve --engine ray``: deploy the configured models on Ray Serve and wait.

The command returns once it is told to stop (SIGTERM or Ctrl-C): the application is deleted, and
a private Ray this command started is shut down with it. It prints the same ``listening on`` line
as the local engine once every model deployment runs.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

import ray
from ray import serve

from ..config import Config
from ..logs import LogSettings
from .cluster import start_http, start_ray
from .deployments import APP_NAME, build_application

log = logging.getLogger(__name__)


def serve_on_ray(config: Config, names: list[str], log_settings: LogSettings,
                 on_listening: Callable[[str, int], None]) -> int:
    """Deploy ``names``, serve them on ``server.host``/``server.port`` (``on_listening(host, port)``
    once they run) until SIGTERM or SIGINT."""
    private = start_ray(config)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs handlers of its own
        signal.signal(signum, lambda *_: stop.set())
    try:
        port = start_http(config.server.host, config.server.port)
        serve.run(build_application(config, names, log_settings), name=APP_NAME, route_prefix="/",
                  logging_config={"enable_access_log": False, "log_level": "WARNING"})
        on_listening(config.server.host, port)
        stop.wait()
        log.info("stopping: deleting the Ray Serve application")
        serve.delete(APP_NAME)
    finally:
        if private:
            serve.shutdown()
            ray.shutdown()
    log.info("stopped")
    return 0
