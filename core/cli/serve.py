"""``modeldeploy serve``: the Flask app under waitress, a production WSGI server.

waitress is pure Python (no compiler, runs wherever the core runs, Windows included), serves
from a pool of threads, which suits models that release the GIL inside torch, and buffers
request bodies before the app sees them; :mod:`.http_server` adds connection timeouts and the
drain on SIGTERM. The command prints the address it listens on, with the real port when
``--port 0`` asks for any free one.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn, TextIO

from .. import collector
from ..config import ENGINES, Config, load_config
from ..devices import resolve_device
from ..errors import ConfigError, ModelLoadError
from ..hub import go_offline_if_unreachable
from ..logs import LOG_FORMATS, LogSettings
from ..openmp import prefer_short_spins
from ..plugins import get_catalog
from ..process_engine import ProcessRegistry
from ..registry import Registry
from .http_server import HttpServer

log = logging.getLogger(__name__)

#: waitress refuses bodies this many times over the app's limit before reading them; smaller
#: excesses reach the app, which answers a JSON 413.
HARD_BODY_LIMIT_FACTOR = 4


def add_commands(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="serve the models over HTTP (homepage, /predict, /models, health)")
    serve.add_argument("--config", help="config.yaml to read (default: every installed model, default settings)")
    serve.add_argument("--host", help="interface to bind (default: server.host of the config, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind, 0 for any free one (default: server.port, else 8080)")
    serve.add_argument("--engine", choices=ENGINES,
                       help="auto (default): process when a served model runs on CUDA, else local; local: "
                            "the models in this process; process: each model in a worker process of its own "
                            "(a GIL of its own, meant for GPUs); ray: each model a Ray Serve deployment "
                            "(pip install 'modeldeploy[ray]')")
    serve.add_argument("--address", help="ray engine: the Ray cluster to join, HOST:PORT (default: server."
                                         "ray_address, else a private Ray on 127.0.0.1)")
    # Also accepted after "serve" (where people type it); it sets the global --log-format.
    serve.add_argument("--log-format", choices=LOG_FORMATS, default=argparse.SUPPRESS,
                       help="text, or json access/log lines for log collectors")
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    prefer_short_spins()  # before any plugin imports torch
    from ..app import create_app
    from ..app.admission import admission_gate

    go_offline_if_unreachable()
    catalog = get_catalog()
    config = load_config(args.config, catalog.wrapper_classes())
    if args.port is not None and not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    overrides = {key: value for key, value in (("host", args.host), ("port", args.port), ("engine", args.engine),
                                               ("ray_address", args.address)) if value is not None}
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, **overrides))
    server_config = config.server
    registry = Registry(config)  # checks that every configured model is installed, on every engine
    engine = chosen_engine(config, registry.names)
    if engine != server_config.engine:
        log.info("server.engine auto: the %s engine", engine)
        server_config = dataclasses.replace(server_config, engine=engine)
        config = dataclasses.replace(config, server=server_config)
    if server_config.engine == "ray":
        return _serve_on_ray(config, registry.names, args)
    if server_config.ray_address:
        raise ConfigError("a Ray address (--address, server.ray_address) is for the ray engine; add --engine ray")
    for name in registry.names:
        model = config.model(name)
        if model.replicas != 1 or model.autoscaling or model.num_cpus or model.num_gpus:
            log.warning("models.%s sets replicas, autoscaling or num_cpus/num_gpus, which the ray engine reads; "
                        "the %s engine serves each model once", name, server_config.engine)
    if server_config.engine == "process":
        registry = ProcessRegistry(config, registry.names, LogSettings(args.log_level, args.log_format),
                                   registry.catalog)
    app = create_app(registry=registry)
    gate = admission_gate(app)
    threads = config.http_threads(registry.names)
    log.info("%d HTTP threads for %d model(s)", threads, len(registry.names))
    try:
        server = HttpServer(app, server_config, threads, server_config.max_body_bytes * HARD_BODY_LIMIT_FACTOR,
                            judge=gate.judge_before_dispatch if gate is not None else None)
    except OSError as exc:
        print(f"error: cannot listen on {server_config.host}:{server_config.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    server.stop_on_signals()
    registry.when_served_changes(lambda names: _grow_threads(server, config, names))
    collector.enable()  # loaded models stay out of full garbage collections (a pause for every request)
    registry.start()  # in the background, once the port is ours: the server answers while models load
    announce_listening(server.addresses, sys.stdout)
    server.serve()  # until SIGTERM or Ctrl-C
    # past the grace period, queued requests get "shutting down" rather than silence
    unfinished = server.drain(stop_models=lambda: registry.close(timeout=0))
    if unfinished:
        log.warning("%d request(s) were still running after server.shutdown_grace_seconds", unfinished)
    log.info("stopped")
    _exit(0)


def chosen_engine(config: Config, names: list[str], resolve: Callable[[str], str] = resolve_device) -> str:
    """The engine ``server.engine`` names; for ``auto``, the process engine when a served model runs
    on CUDA (there the model thread sharing the HTTP front's GIL served 1.7-1.8 x fewer answers at
    32 clients, bench/results-gpu-h100.md), else the local one (alike on the CPU, and it starts
    faster). A device this machine lacks counts as not CUDA: that model fails to load either way."""
    if config.server.engine != "auto":
        return config.server.engine
    for name in names:
        try:
            if resolve(config.model(name).device).startswith("cuda"):
                return "process"
        except ModelLoadError:
            continue
    return "local"


def _grow_threads(server: HttpServer, config: Config, names: list[str]) -> None:
    """A model served at run time gets its share of the HTTP threads, as one served from the start."""
    threads = config.http_threads(names)
    if server.grow_threads(threads):
        log.info("%d HTTP threads for %d model(s)", threads, len(names))


def _serve_on_ray(config: Config, names: list[str], args: argparse.Namespace) -> int:
    try:
        from ..ray_engine.serve import serve_on_ray
    except ImportError as exc:
        raise ConfigError(f"the ray engine needs Ray Serve, which cannot be imported here ({exc}); install it "
                          "with: pip install 'modeldeploy[ray]'") from None
    return serve_on_ray(config, names, LogSettings(args.log_level, args.log_format),
                        lambda host, port: announce_listening([(host, port)], sys.stdout))


def announce_listening(addresses: list[tuple[str, int]], stream: TextIO) -> None:
    """Print one "listening on" line per address, each in a single write.

    ``print`` writes the text and its newline separately; on an unbuffered stream shared with the
    log (models log from their own threads while the port opens) a log line could land between
    the two, and whoever reads the address from the output would read a broken line.
    """
    for host, port in addresses:
        stream.write(f"modeldeploy listening on {url(host, port)}\n")
        stream.flush()


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _exit(status: int) -> NoReturn:
    """Leave without interpreter teardown: a model still loading in a background thread would
    otherwise abort the process inside torch's C++ code ("terminate called without an active
    exception") instead of letting it exit with status 0."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
