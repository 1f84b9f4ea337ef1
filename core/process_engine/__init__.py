"""``server.engine: process``: the HTTP front in this process, each model in a worker process of its own.

The local engine runs the models' threads beside the front's, under one GIL; the process engine
gives each model its own (see :mod:`.worker` for why that matters on a GPU). The app, the
admission gate and the HTTP contract are the same: the front holds a
:class:`~modeldeploy.remote.RemoteRegistry` whose clients are :class:`.client.ProcessModelClient`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..cancellation import Cancellation
from ..config import Config, ModelConfig
from ..errors import OverloadedError
from ..logs import LogSettings
from ..plugins import Catalog, ModelEntry
from ..registry import ServedModel
from ..remote import RemoteRegistry, RemoteServedModel
from .client import ProcessModelClient

__all__ = ["ProcessRegistry"]


class ProcessRegistry(RemoteRegistry):
    """The models ``names`` of ``config``, each served by a worker process this registry starts
    (:meth:`start`) and stops (:meth:`close`)."""

    engine = "process"

    def __init__(self, config: Config, names: list[str], log_settings: LogSettings,
                 catalog: Catalog | None = None) -> None:
        self._sockets = Path(tempfile.mkdtemp(prefix="modeldeploy-workers-"))
        self.workers = {name: ProcessModelClient(config, name, log_settings, self._sockets / f"{index}.sock")
                        for index, name in enumerate(names)}
        super().__init__(config, self.workers, catalog)

    def _new_served_model(self, entry: ModelEntry, config: ModelConfig) -> ServedModel:
        return _ProcessServedModel(entry, config, self.workers[entry.name])

    def start(self, background: bool = True) -> None:
        for worker in self.workers.values():
            worker.start()
        super().start(background)

    def close(self, timeout: float | None = 10.0) -> None:
        super().close(timeout)
        for worker in self.workers.values():
            worker.close()
        shutil.rmtree(self._sockets, ignore_errors=True)


class _ProcessServedModel(RemoteServedModel):
    """A model in a worker process: the front knows how much it sent there, so it can refuse a
    full worker before Flask runs (the admission gate asks :meth:`_queue_refusal`), and it passes
    each request's cancellation on to the worker."""

    client: ProcessModelClient

    def _queue_refusal(self, timeout: float | None) -> OverloadedError | None:
        return self.client.refusal()

    def predict_texts(self, texts: Sequence[str], timeout: float | None = None,
                      cancellation: Cancellation | None = None) -> list[Any]:
        """As the local model's: a request whose client hangs up leaves the worker's queue too."""
        self.raise_unless_ready()
        return self.client.predict(texts, timeout, cancellation)
