"""The worker process of one model: its local registry, batcher and planner, and nothing else.

The HTTP front's threads parse, answer and log for every client; a model thread sharing their GIL
waits behind them at each torch operation, which on a GPU (a few hundred short kernel launches per
forward pass) costs more than the forward pass itself (bench/results-gpu.md). Here the model
has a GIL of its own: the process runs a :class:`~modeldeploy.remote.ModelService` behind a Unix
socket, one thread per connection of a front (one or several: ``server.fronts``), each passing its
request to the batcher.

Messages are pickled tuples over :mod:`multiprocessing.connection` (authenticated with a key
only the fronts know): ``("predict", texts, timeout, request_id)`` answers results or a
:class:`~modeldeploy.remote.RemoteFailure`, ``("cancel", request_id)`` takes that request out of
the queue (its client hung up; it may arrive first, on another connection), ``("report",)`` a
:class:`~modeldeploy.remote.ReplicaReport`, ``("metrics",)`` this process's Prometheus text,
``("load", source, sha256)`` and ``("unload",)`` an operator's, answered with a report once done
(or a failure). A worker started ``unloaded`` loads nothing until an operator's load.
The socket opens before the model loads, so the front sees "loading" rather than silence. The
process ignores SIGINT and SIGTERM (the front stops it after draining) and ends with its parent.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections import deque
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

from .. import collector
from ..cancellation import Cancellation
from ..config import Config
from ..errors import ModelNotReadyError, PredictionError
from ..logs import LogSettings
from ..registry import FAILED, LOADING, ModelStatus
from ..remote import ModelService, RemoteFailure, ReplicaReport

log = logging.getLogger(__name__)

#: Cancels remembered for requests not yet arrived (a cancel may overtake its request).
EARLY_CANCELS = 1024


def run_worker(config: Config, name: str, address: str, authkey: bytes, log_settings: LogSettings,
               unloaded: bool = False) -> None:
    """The worker's main (the target of a spawned process): listen, load the model (unless it
    starts ``unloaded``, as an operator left it), answer."""
    log_settings.apply()
    name_this_process("mdeploy-worker")
    collector.enable()
    # Ctrl-C, and a service manager's SIGTERM to the whole group, are the front's: it drains its
    # requests first, then stops its workers
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    exit_with_parent()
    listener = Listener(address, family="AF_UNIX", authkey=authkey)
    worker = _Worker(config, name, unloaded)
    threading.Thread(target=worker.load, name=f"modeldeploy-load-{name}", daemon=True).start()
    while True:
        try:
            connection = listener.accept()
        except (OSError, EOFError, multiprocessing.AuthenticationError) as exc:  # failed the handshake: not ours
            log.warning("worker of model %s refused a connection: %s", name, exc)
            continue
        threading.Thread(target=worker.answer, args=(connection,), name=f"modeldeploy-conn-{name}",
                         daemon=True).start()


class _Worker:
    """Answers the front's messages, with "loading" until the model service exists."""

    def __init__(self, config: Config, name: str, unloaded: bool = False) -> None:
        self.config, self.name, self.unloaded = config, name, unloaded
        self.service: ModelService | None = None
        #: Why the model service could not be built (its plugin is not installed here, say).
        self.failure: str | None = None
        self._lock = threading.Lock()
        #: The cancellation of each request being answered, by the front's request id.
        self._running: dict[int, Cancellation] = {}
        #: Ids cancelled before their request arrived (the latest :data:`EARLY_CANCELS`, oldest first).
        self._early_order: deque[int] = deque()
        self._early: set[int] = set()

    def load(self) -> None:
        try:
            # loads the model (retries as locally); an unloaded one waits for an operator's load
            config = self.config.with_model(self.name, lazy=True) if self.unloaded else self.config
            service = ModelService(config, self.name)
            if self.unloaded:
                service.unload()
            self.service = service
        except Exception as exc:  # noqa: BLE001 - reported to the front, which shows it as the model's status
            log.exception("worker of model %s could not start its model service", self.name)
            self.failure = f"the worker process of model {self.name!r} could not start: {type(exc).__name__}: {exc}"

    def answer(self, connection: Connection) -> None:
        with connection:
            while True:
                try:
                    message = connection.recv()
                except (EOFError, OSError):
                    return  # the front closed this connection
                try:
                    reply = self._reply(message)
                except Exception as exc:  # noqa: BLE001 - a bug here must fail one request, not the connection
                    log.exception("worker of model %s failed to answer %r", self.name, message[0])
                    reply = RemoteFailure.of(PredictionError(
                        f"model {self.name!r}: its worker process failed: {type(exc).__name__}: {exc}"))
                connection.send(reply)

    def _reply(self, message: tuple[Any, ...]) -> Any:
        kind, *args = message
        if kind not in ("predict", "cancel", "report", "metrics", "load", "unload"):
            raise ValueError(f"unknown message {kind!r}")
        service = self.service
        if kind == "metrics":
            return ModelService.metrics()
        if kind == "cancel":
            return self._cancel(*args)
        if service is None:
            if kind == "report":
                return ReplicaReport(ModelStatus(FAILED, self.failure) if self.failure else ModelStatus(LOADING))
            return RemoteFailure.of(ModelNotReadyError(self.failure or f"model {self.name!r} is still loading",
                                                       retry_after=5))
        if kind == "load":
            return service.load(*args)
        if kind == "unload":
            return service.unload()
        return self._predict(service, *args) if kind == "predict" else service.report()

    def _predict(self, service: ModelService, texts: list[str], timeout: float | None, request_id: int) -> Any:
        cancellation = Cancellation()
        with self._lock:
            self._running[request_id] = cancellation
            cancelled = request_id in self._early
            self._early.discard(request_id)
        if cancelled:
            cancellation.cancel()
        try:
            return service.predict(texts, timeout, cancellation)
        finally:
            with self._lock:
                self._running.pop(request_id, None)

    def _cancel(self, request_id: int) -> None:
        with self._lock:
            cancellation = self._running.get(request_id)
            if cancellation is None:
                if len(self._early_order) == EARLY_CANCELS:
                    self._early.discard(self._early_order.popleft())
                self._early_order.append(request_id)
                self._early.add(request_id)
        if cancellation is not None:
            cancellation.cancel()


def name_this_process(name: str) -> None:
    """Show ``name`` for this process in ps and top, which otherwise show every spawned process as
    ``python`` (Linux keeps 15 characters; where there is no /proc, nothing changes)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(name[:15])


def exit_with_parent() -> None:
    """A worker (or a further front process) never outlives the front that started it: a killed
    front leaves no model, and no front without its workers' keeper, behind."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(0)

    threading.Thread(target=watch, name="modeldeploy-parent-watch", daemon=True).start()
