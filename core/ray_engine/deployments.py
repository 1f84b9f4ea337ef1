"""The Ray Serve application: one deployment per served model, and the ingress that fronts them.

A model replica is the local engine for one model: the ordinary registry (loading, retries with
backoff, demo fallback), the batcher and the cost-model planner, so batching inside a replica is
exactly what was measured on the local engine. It admits ``batch.max_queue + batch.max_batch_size``
requests at once (enough to fill a batch while the next one queues); Ray queues up to
``max_queued_requests`` more in front of it and refuses the rest (503).

The ingress builds the Flask app on its replica (a Flask app cannot be pickled; an importable
factory can) over a :class:`~modeldeploy.remote.RemoteRegistry`, behind a2wsgi, so every route and
error of the local engine is served unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from a2wsgi import WSGIMiddleware
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from .. import collector
from ..app import create_app
from ..config import Config, ModelConfig
from ..logs import LogSettings
from ..remote import ModelService, RemoteFailure, RemoteRegistry, ReplicaReport
from .client import RayModelClient

#: The Ray Serve application's name (one per cluster, like one server per port).
APP_NAME = "modeldeploy"
INGRESS = "modeldeploy-ingress"


def max_ongoing(model: ModelConfig) -> int:
    """Requests one replica takes at once: a full queue plus the batch being computed."""
    return model.batch.max_queue + model.batch.max_batch_size


def max_queued(model: ModelConfig) -> int:
    """Requests Serve holds for busy replicas before refusing (503): the config's, else a queue's worth."""
    return model.max_queued_requests or model.batch.max_queue


class ModelReplica:
    """One replica of one model: a :class:`~modeldeploy.remote.ModelService` (the local registry,
    batcher and planner for that model) behind Ray's handle."""

    def __init__(self, config: Config, name: str, log_settings: LogSettings) -> None:
        log_settings.apply()
        collector.enable()  # this replica's process is the model's own
        model = config.model(name)
        # torch gets the CPUs this replica reserved, unless the config says otherwise
        server = dataclasses.replace(config.server, torch_threads=config.server.torch_threads or int(model.num_cpus))
        self._service = ModelService(dataclasses.replace(config, server=server), name)
        self._pool = ThreadPoolExecutor(max_workers=max_ongoing(model), thread_name_prefix=f"replica-{name}")

    async def predict(self, texts: list[str], timeout: float | None = None) -> list[Any] | RemoteFailure:
        # Each request waits for its batch on a thread of its own, so the batcher sees them all.
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._service.predict, texts, timeout)

    def report(self) -> ReplicaReport:
        return self._service.report()

    def metrics(self) -> str:
        return self._service.metrics()

    def __del__(self) -> None:
        self._service.close()


@serve.ingress()
class Ingress:
    """The HTTP front: the local engine's Flask app over the model deployments' handles."""

    def __init__(self, config: Config, handles: dict[str, DeploymentHandle], log_settings: LogSettings) -> None:
        log_settings.apply()
        self._config = config
        clients = {name: RayModelClient(name, handle, config.model(name).batch.timeout,
                                        max_queued(config.model(name)))
                   for name, handle in handles.items()}
        self._registry = RemoteRegistry(config, clients)
        self._registry.start()

    def __serve_build_asgi_app__(self) -> WSGIMiddleware:
        app = create_app(registry=self._registry)
        return WSGIMiddleware(_input_ends_with_the_body(app), workers=self._config.http_threads(self._registry.names))


def _input_ends_with_the_body(app: Any) -> Any:
    """Let werkzeug read a chunked body (no Content-Length) to its end, as it does under waitress.

    a2wsgi's ``wsgi.input`` ends where the request's body ends (the proxy de-chunks it) but does
    not say so, and werkzeug then reads a body without a length as empty; Flask's own limit
    (``server.max_body_bytes``) still applies while it reads.
    """
    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        environ["wsgi.input_terminated"] = True
        return app(environ, start_response)
    return wsgi


def build_application(config: Config, names: list[str], log_settings: LogSettings) -> Application:
    """The Serve application for ``names``: a deployment per model, each with its replicas and
    resources from the config, bound into the ingress."""
    handles = {}
    model_config = dataclasses.replace(config, server=dataclasses.replace(config.server, admin_token=""))
    for name in names:
        model = config.model(name)
        options: dict[str, Any] = {
            "name": name,
            "max_ongoing_requests": max_ongoing(model),
            "max_queued_requests": max_queued(model),
            "ray_actor_options": {"num_cpus": model.num_cpus, "num_gpus": model.num_gpus},
        }
        if model.autoscaling is not None:
            scaling = model.autoscaling
            options["autoscaling_config"] = {
                "min_replicas": scaling.min_replicas, "max_replicas": scaling.max_replicas,
                "target_ongoing_requests": scaling.target_ongoing_requests or model.batch.max_batch_size}
        else:
            options["num_replicas"] = model.replicas
        handles[name] = serve.deployment(ModelReplica).options(**options).bind(model_config, name, log_settings)
    threads = config.http_threads(names)
    ingress = serve.deployment(Ingress).options(name=INGRESS, max_ongoing_requests=threads,
                                                ray_actor_options={"num_cpus": 0})
    return ingress.bind(config, handles, log_settings)
