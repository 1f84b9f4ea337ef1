"""The front's side of a model in a worker process: start it, reach it, start it again if it dies.

Each of the front's threads borrows a connection to the worker (a pool, one per thread at most),
sends its texts and waits for the reply without holding the GIL. The worker's own batcher gathers
what the threads send, so batching, admission and deadlines are the local engine's. A worker
that exits (a crash, the OOM killer) is started again after a backoff; meanwhile its model is
failed, saying why, and its requests get 503. Operators' loads and unloads are the worker's
registry's (a new version swapped in without dropping a request); a worker started again starts
as the last of them left it (that source, or unloaded). Reaching a worker is a :class:`WorkerLink`;
the front that starts it holds a :class:`ProcessModelClient`, which is one, and other front
processes (``server.fronts``) reach it through links of their own.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any

from ..cancellation import Cancellation
from ..config import Config, ModelConfig
from ..errors import ModelDeployError, ModelNotReadyError, OverloadedError, PredictionTimeoutError
from ..logs import LogSettings
from ..registry import FAILED, LOADING, ModelStatus
from ..remote import RemoteFailure, ReplicaReport
from ..retrying import Backoff
from .worker import run_worker

log = logging.getLogger(__name__)

#: Seconds a status report or a metrics read may take; past it the worker counts as busy.
REPORT_TIMEOUT = 5.0
#: Seconds beyond the request's deadline (the worker answers 504 itself) before the front gives up.
TIMEOUT_MARGIN = 5.0
#: Waits before starting a worker that exited again (at least two of the registry's one-second status
#: reads, so the failure shows in /health/ready); a worker that ran this long starts afresh.
RESTART_BACKOFF, STABLE_SECONDS = Backoff(initial=2.5, maximum=30.0), 60.0


@dataclass(frozen=True)
class WorkerAddress:
    """A model's worker as other front processes reach it: its socket and the key it accepts."""

    name: str
    socket_path: Path
    authkey: bytes = field(repr=False)


class WorkerLink:
    """The connections of one front process to one model's worker: predictions, reports, metrics.

    The front that starts the worker reaches it through a :class:`ProcessModelClient`; the other
    front processes (``server.fronts``) through a link of their own, made from its
    :class:`WorkerAddress`, numbering their requests from ``first_request_id`` so that a cancel
    names one request whichever front sent it."""

    def __init__(self, config: Config, address: WorkerAddress, first_request_id: int = 0) -> None:
        self.name = address.name
        self._socket_path, self._authkey = address.socket_path, address.authkey
        self._timeout = config.model(self.name).batch.timeout
        self._request_ids = itertools.count(first_request_id)
        self._lock = threading.Lock()
        #: Idle connections to the running worker; a new worker gets a new pool.
        self._idle: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        #: Why the worker is not running, while it waits to be started again.
        self._down: str | None = None
        #: Requests sent to the worker and not yet answered, and how many the front lets in: a
        #: queue's worth (``max_queue``). Past it the worker is refusing or about to: refusing here
        #: keeps a retry storm at the admission gate (cheap and paced) instead of sending each
        #: retry through Flask and a round trip to be refused by the worker's queue.
        self._in_flight = 0
        self._capacity = config.model(self.name).batch.max_queue

    @property
    def address(self) -> WorkerAddress:
        """How another front process reaches this worker."""
        return WorkerAddress(self.name, self._socket_path, self._authkey)

    # ------------------------------------------------------------------ ModelClient
    def predict(self, texts: Sequence[str], timeout: float | None = None,
                cancellation: Cancellation | None = None) -> list[Any]:
        """Results from the worker; cancelling ``cancellation`` takes the request out of its queue."""
        waited = (self._timeout if timeout is None else min(timeout, self._timeout)) + TIMEOUT_MARGIN
        request_id = next(self._request_ids)
        unregister = cancellation.on_cancel(lambda: self._send_cancel(request_id)) if cancellation else None
        with self._lock:
            self._in_flight += 1
        try:
            reply = self._call(("predict", list(texts), timeout, request_id), waited)
        finally:
            with self._lock:
                self._in_flight -= 1
            if unregister is not None:
                unregister()
        if isinstance(reply, RemoteFailure):
            raise reply.error()
        return reply

    def refusal(self) -> OverloadedError | None:
        """Overloaded when a queue's worth of requests is already in flight to the worker: judged
        here, so a retry storm is refused by the admission gate without a round trip (the worker's
        own admission, with the predicted wait, still judges what is let through)."""
        in_flight = self._in_flight
        if in_flight < self._capacity:
            return None
        return OverloadedError(f"model {self.name!r} is overloaded ({in_flight} requests in flight to its worker "
                               f"process, max_queue {self._capacity}); retry later", retry_after=1)

    def report(self) -> ReplicaReport:
        with self._lock:
            down = self._down
        if down is not None:
            return ReplicaReport(ModelStatus(FAILED, down, fix="the server log has the worker's last lines"))
        if not self._socket_path.exists():
            return ReplicaReport(ModelStatus(LOADING))  # the worker is starting: its socket is not open yet
        return self._call(("report",), REPORT_TIMEOUT)

    def _send_cancel(self, request_id: int) -> None:
        """Tell the worker, from a thread of the client's own (the canceller is the server's loop)."""
        def send() -> None:
            try:
                self._call(("cancel", request_id), REPORT_TIMEOUT)
            except ModelDeployError:
                pass  # the worker is gone or stuck: nothing of the request will be answered anyway

        threading.Thread(target=send, name=f"modeldeploy-cancel-{self.name}", daemon=True).start()

    def metric_texts(self) -> list[str]:
        try:
            return [self._call(("metrics",), REPORT_TIMEOUT)]
        except ModelDeployError:
            return []

    def _call(self, message: tuple[Any, ...], waited: float) -> Any:
        connection, pool = self._connection()
        try:
            try:
                connection.send(message)
            except OSError:  # an idle connection to a worker that has exited since: nothing was sent
                connection.close()
                self._forget_idle(pool)
                connection, pool = self._connection(idle=False)
                connection.send(message)
            if not connection.poll(waited):
                connection.close()  # its reply, if it ever comes, must not answer the next request
                raise PredictionTimeoutError(f"model {self.name!r}: its worker process did not answer within "
                                             f"{waited:g} s")
            reply = connection.recv()
        except (EOFError, OSError):
            connection.close()
            raise ModelNotReadyError(f"the worker process of model {self.name!r} stopped while answering; "
                                     "retry shortly", retry_after=1) from None
        pool.put(connection)
        return reply

    def _connection(self, idle: bool = True) -> tuple[Connection, queue.SimpleQueue[Connection]]:
        """An idle connection to the running worker (unless ``idle`` is False), or a new one, with the
        pool it returns to."""
        with self._lock:
            down, pool = self._down, self._idle
        if down is not None:
            raise ModelNotReadyError(down, retry_after=1)
        if idle:
            try:
                return pool.get_nowait(), pool
            except queue.Empty:
                pass
        try:
            return Client(str(self._socket_path), family="AF_UNIX", authkey=self._authkey), pool
        except (OSError, EOFError):  # no socket yet, or the worker died during the handshake
            raise ModelNotReadyError(f"the worker process of model {self.name!r} is starting; retry shortly",
                                     retry_after=1) from None

    def _forget_idle(self, pool: queue.SimpleQueue[Connection]) -> None:
        """Close the idle connections of ``pool``, whose worker has exited (a front that did not start
        it learns so only here), and start a new pool."""
        with self._lock:
            if self._idle is pool:
                self._idle = queue.SimpleQueue()
        while True:
            try:
                pool.get_nowait().close()
            except queue.Empty:
                return


class ProcessModelClient(WorkerLink):
    """One model's worker process, which this front starts, watches and stops, and the connections to it."""

    def __init__(self, config: Config, name: str, log_settings: LogSettings, socket_path: Path,
                 unloaded: bool = False) -> None:
        super().__init__(config, WorkerAddress(name, socket_path, os.urandom(32)))
        self._log_settings = log_settings
        #: What a worker (re)starts from: the config, with the source of an operator's last load,
        #: and whether an operator's unload left the model out.
        self._config, self._unloaded = config, unloaded
        self._load_timeout = config.model(name).load_timeout
        self._process: Any = None
        self._closing = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._spawn()
        threading.Thread(target=self._supervise, name=f"modeldeploy-supervise-{self.name}", daemon=True).start()

    def close(self) -> None:
        """Stop the worker (SIGKILL: it ignores SIGTERM, and has nothing to save); a request still
        in it gets 503. The front calls this after draining its own requests."""
        self._closing.set()
        process = self._process
        if process is not None and process.is_alive():
            process.kill()
            process.join()
        self._socket_path.unlink(missing_ok=True)

    def _spawn(self) -> None:
        self._socket_path.unlink(missing_ok=True)
        with self._lock:
            config, unloaded = self._config, self._unloaded
        process = multiprocessing.get_context("spawn").Process(
            target=run_worker, name=f"modeldeploy-worker-{self.name}",
            args=(config, self.name, str(self._socket_path), self._authkey, self._log_settings, unloaded))
        process.start()
        with self._lock:
            self._process, self._idle, self._down = process, queue.SimpleQueue(), None

    def _supervise(self) -> None:
        attempt = 0
        while True:
            started = time.monotonic()
            self._process.join()
            if self._closing.is_set():
                return
            attempt = 1 if time.monotonic() - started > STABLE_SECONDS else attempt + 1
            delay = RESTART_BACKOFF.delay(attempt)
            reason = (f"the worker process of model {self.name!r} exited with code {self._process.exitcode}; "
                      f"it is started again in {delay:.0f} s")
            log.error("%s", reason)
            with self._lock:
                self._down = reason
            if self._closing.wait(delay):
                return
            self._spawn()

    # ------------------------------------------------------------------ operators
    def load(self, source: str | None = None, sha256: str | None = None) -> ReplicaReport:
        """An operator's load in the worker (``source``, else the one serving), reported once swapped
        in; raises the load's error, the version serving before still serving."""
        reply = self._call(("load", source, sha256), self._load_timeout + TIMEOUT_MARGIN)
        if isinstance(reply, RemoteFailure):
            raise reply.error()
        with self._lock:
            if source is not None:
                self._config = self._config.with_model(self.name, source=source, sha256=sha256)
            self._unloaded = False
        return reply

    @property
    def model_config(self) -> ModelConfig:
        """The model's settings as a worker starts from them now (with an operator's last source)."""
        with self._lock:
            return self._config.model(self.name)

    def unload(self) -> ReplicaReport:
        """An operator's unload in the worker, reported once what it had accepted is answered. A
        worker down meanwhile starts again unloaded."""
        with self._lock:
            self._unloaded = True
        return self._call(("unload",), self._timeout + TIMEOUT_MARGIN)

    def wait_until_answering(self) -> ReplicaReport:
        """The first report of a worker just started that says more than "loading" (its model
        service exists, or the worker failed), waiting up to the model's ``load_timeout``."""
        deadline = time.monotonic() + self._load_timeout
        while True:
            try:
                report = self.report()
            except ModelNotReadyError:  # its socket is not listening yet
                report = ReplicaReport(ModelStatus(LOADING))
            if report.status.state != LOADING or time.monotonic() > deadline:
                return report
            time.sleep(0.05)
