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
import sys
import time
from collections.abc import Callable
from typing import TextIO

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
from .fronts import FrontProcesses
from .http_server import FINAL_FLUSH_SECONDS, HttpServer, http_server_for
from .process_exit import exit_now

log = logging.getLogger(__name__)


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
    serve.add_argument("--fronts", type=int, help="process engine: HTTP front processes sharing the port and the "
                                                  "model workers, one GIL each (default: server.fronts, else 1)")
    serve.add_argument("--address", help="ray engine: the Ray cluster to join, HOST:PORT (default: server."
                                         "ray_address, else a private Ray on 127.0.0.1)")
    # Also accepted after "serve" (where people type it); it sets the global --log-format.
    serve.add_argument("--log-format", choices=LOG_FORMATS, default=argparse.SUPPRESS,
                       help="text, or json access/log lines for log collectors")
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    prefer_short_spins()  # before any plugin imports torch
    from ..app import create_app

    go_offline_if_unreachable()
    catalog = get_catalog()
    config = load_config(args.config, catalog.wrapper_classes())
    if args.port is not None and not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    if args.fronts is not None and args.fronts < 1:
        raise ConfigError(f"--fronts must be at least 1, got {args.fronts}")
    overrides = {key: value for key, value in (("host", args.host), ("port", args.port), ("engine", args.engine),
                                               ("ray_address", args.address), ("fronts", args.fronts))
                 if value is not None}
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, **overrides))
    server_config = config.server
    registry = Registry(config)  # checks that every configured model is installed, on every engine
    engine = chosen_engine(config, registry.names)
    if engine != server_config.engine:
        log.info("server.engine auto: the %s engine", engine)
        server_config = dataclasses.replace(server_config, engine=engine)
        config = dataclasses.replace(config, server=server_config)
    if server_config.fronts > 1 and server_config.engine != "process":
        raise ConfigError(f"server.fronts: {server_config.fronts} needs the process engine (the models in worker "
                          f"processes that every front reaches); the {server_config.engine} engine serves from one "
                          "front: set server.engine: process, or server.fronts: 1")
    if server_config.engine == "ray":
        return _serve_on_ray(config, registry.names, args)
    if server_config.ray_address:
        raise ConfigError("a Ray address (--address, server.ray_address) is for the ray engine; add --engine ray")
    for name in registry.names:
        model = config.model(name)
        if model.replicas != 1 or model.autoscaling or model.num_cpus or model.num_gpus:
            log.warning("models.%s sets replicas, autoscaling or num_cpus/num_gpus, which the ray engine reads; "
                        "the %s engine serves each model once", name, server_config.engine)
    log_settings = LogSettings(args.log_level, args.log_format)
    if server_config.engine == "process":
        registry = ProcessRegistry(config, registry.names, log_settings, registry.catalog)
    app = create_app(registry=registry)
    try:
        server = http_server_for(app, config, registry.names)
    except OSError as exc:
        print(f"error: cannot listen on {server_config.host}:{server_config.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    server.stop_on_signals()
    registry.when_served_changes(lambda names: _grow_threads(server, config, names))
    collector.enable()  # loaded models stay out of full garbage collections (a pause for every request)
    registry.start()  # in the background, once the port is ours: the server answers while models load
    fronts = None
    if isinstance(registry, ProcessRegistry) and server_config.fronts > 1:
        fronts = FrontProcesses(config, server_config.fronts, registry.worker_addresses(), server.sockets,
                                log_settings)
        registry.share_front_metrics(fronts.metric_texts)
        fronts.start()
    announce_listening(server.addresses, sys.stdout)
    server.serve()  # until SIGTERM or Ctrl-C
    # the other fronts drain meanwhile, within the same grace period and final flush
    fronts_done_by = time.monotonic() + server_config.shutdown_grace_seconds + FINAL_FLUSH_SECONDS
    if fronts is not None:
        fronts.ask_to_drain()
    # past the grace period, queued requests get "shutting down" rather than silence
    unfinished = server.drain(stop_models=lambda: _stop_models(registry, fronts, fronts_done_by))
    if unfinished:
        log.warning("%d request(s) were still running after server.shutdown_grace_seconds", unfinished)
    log.info("stopped")
    exit_now(0)


def _stop_models(registry: Registry, fronts: FrontProcesses | None, fronts_done_by: float) -> None:
    """Stop the models once no front needs them: the other fronts have drained, or been killed at
    ``fronts_done_by`` (monotonic)."""
    if fronts is not None:
        fronts.wait(max(0.0, fronts_done_by - time.monotonic()))
    registry.close(timeout=0)


def chosen_engine(config: Config, names: list[str], resolve: Callable[[str], str] = resolve_device) -> str:
    """The engine ``server.engine`` names; for ``auto``, the process engine when a served model runs
    on CUDA (there the model thread sharing the HTTP front's GIL served 1.7-1.8 x fewer answers at
    32 clients, bench/results-gpu-h100.md), else the local one (alike on the CPU, and it starts
    faster). A device this machine lacks counts as not CUDA: that model fails to load either way."""
    if config.server.engine != "auto":
        return config.server.engine
    if config.server.fronts > 1:
        return "process"  # several fronts share the models' worker processes
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
