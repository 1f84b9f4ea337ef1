"""``server.engine: process``: the HTTP front in this process, each model in a worker process of its own.

The local engine runs the models' threads beside the front's, under one GIL; the process engine
gives each model its own (see :mod:`.worker` for why that matters on a GPU). The app, the
admission gate and the HTTP contract are the same: the front holds a
:class:`~modeldeploy.remote.RemoteRegistry` whose clients are :class:`.client.ProcessModelClient`.
Operators' loads and unloads are carried out by the model's worker, as the local registry carries
them out; loading an installed model the config left out starts a worker for it. With several
front processes (``server.fronts``, the others' registry is :mod:`.attached`), they are refused.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from ..cancellation import Cancellation
from ..config import Config, ModelConfig
from ..errors import (
    ModelDeployError,
    ModelLoadError,
    ModelNotReadyError,
    OverloadedError,
    UnsupportedOperationError,
)
from ..logs import LogSettings
from ..plugins import Catalog, ModelEntry
from ..registry import LOADING, READY, UNLOADED, ModelStatus, ServedModel
from ..remote import RemoteRegistry, RemoteServedModel
from .client import ProcessModelClient, WorkerAddress

__all__ = ["ProcessRegistry"]


class ProcessRegistry(RemoteRegistry):
    """The models ``names`` of ``config``, each served by a worker process this registry starts
    (:meth:`start`) and stops (:meth:`close`)."""

    engine = "process"

    def __init__(self, config: Config, names: list[str], log_settings: LogSettings,
                 catalog: Catalog | None = None) -> None:
        self._sockets = Path(tempfile.mkdtemp(prefix="modeldeploy-workers-"))
        self._log_settings = log_settings
        self.workers: dict[str, ProcessModelClient] = {}
        for name in names:
            self.workers[name] = self._new_worker(config, name)
        super().__init__(config, self.workers, catalog)

    def _new_worker(self, config: Config, name: str, unloaded: bool = False) -> ProcessModelClient:
        return ProcessModelClient(config, name, self._log_settings, self._sockets / f"{len(self.workers)}.sock",
                                  unloaded)

    def _new_served_model(self, entry: ModelEntry, config: ModelConfig) -> ServedModel:
        return _ProcessServedModel(entry, config, self.workers[entry.name])

    def start(self, background: bool = True) -> None:
        for worker in self.workers.values():
            worker.start()
        super().start(background)

    def worker_addresses(self) -> list[WorkerAddress]:
        """How the other front processes (``server.fronts``) reach the workers this one started."""
        return [worker.address for worker in self.workers.values()]

    def load_model(self, name: str, source: str | None = None, sha256: str | None = None) -> ModelStatus:
        """As the local registry's (see :meth:`modeldeploy.registry.Registry.load_model`), carried
        out by the model's worker; a model not served yet gets a worker of its own first. Refused
        with several front processes."""
        entry = self._installed(name)
        if self.config.server.fronts > 1:
            raise several_fronts_error(self.config.server.fronts)
        with self._manage_lock:
            if self._closing.is_set():
                raise ModelNotReadyError("the server is shutting down", retry_after=5)
            served = self._models.get(name)
            if not isinstance(served, _ProcessServedModel):
                served = self._serve_new(entry)
            if served.status.state != READY:
                served.set_status(ModelStatus(LOADING, attempts=served.status.attempts + 1))
            try:
                served.show(served.client.load(source, sha256))
            except ModelDeployError:
                served.refresh()  # the worker's word on what serves now
                raise
            served.config = served.client.model_config
        return served.status

    def _serve_new(self, entry: ModelEntry) -> _ProcessServedModel:
        """An installed model the config did not serve: its worker, started unloaded."""
        worker = self.workers[entry.name] = self._clients[entry.name] = self._new_worker(
            self.config, entry.name, unloaded=True)
        worker.start()
        served = cast(_ProcessServedModel, self._add_served(entry))  # made by _new_served_model, on that worker
        self._served_changed()
        report = worker.wait_until_answering()
        served.show(report)
        if report.status.state != UNLOADED:
            raise ModelLoadError(f"the worker process of model {entry.name!r} did not start: "
                                 f"{report.status.reason or 'still starting after its load_timeout'}")
        return served

    def unload_model(self, name: str) -> None:
        """As the local registry's: new requests are refused at once (here, by the front); returns
        once the worker has answered what it had accepted."""
        if name not in self._models:
            self.catalog.entry(name)  # unknown: 404
            return
        if self.config.server.fronts > 1:
            raise several_fronts_error(self.config.server.fronts)
        with self._manage_lock:
            served = cast(_ProcessServedModel, self._models[name])
            served.set_status(ModelStatus(UNLOADED, attempts=served.status.attempts))
            served.show(served.client.unload())

    def close(self, timeout: float | None = 10.0) -> None:
        super().close(timeout)
        for worker in self.workers.values():
            worker.close()
        shutil.rmtree(self._sockets, ignore_errors=True)


def several_fronts_error(fronts: int) -> UnsupportedOperationError:
    """Why operators' loads and unloads are refused with several front processes: each changes what
    one front serves, and the fronts have no way to agree on it, so none is half done."""
    return UnsupportedOperationError(
        f"operators' loads and unloads need a single front process, and this server runs {fronts} "
        "(server.fronts); change the config and restart the server instead")


class _ProcessServedModel(RemoteServedModel):
    """A model in a worker process: the front knows how much it sent there, so it can refuse a
    full worker before Flask runs (the admission gate asks :meth:`_queue_refusal`), and it passes
    each request's cancellation on to the worker."""

    client: ProcessModelClient

    def _queue_refusal(self, timeout: float | None, reserve: bool = False) -> OverloadedError | None:
        return self.client.refusal()  # the client counts what it has in flight already

    def predict_texts(self, texts: Sequence[str], timeout: float | None = None,
                      cancellation: Cancellation | None = None) -> list[Any]:
        """As the local model's: a request whose client hangs up leaves the worker's queue too."""
        self.raise_unless_ready()
        return self.client.predict(texts, timeout, cancellation)
