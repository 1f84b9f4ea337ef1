"""Several HTTP front processes (``server.fronts``) on one listening socket, sharing the model workers.

One front process parses, answers and logs under one GIL: about 0.5-1 ms of CPU per answer, so
1,000-2,000 answers a second at most, however fast the model behind it (bench/results-front-cost.md;
two fronts on 2 cores: bench/results-front-cost-fronts.md). With the process engine the models already run in worker processes of their own, so more fronts
only need the workers' addresses: the first front (the ``modeldeploy serve`` process) binds the
socket and starts the workers, then starts the others here (multiprocessing's spawn), each serving
the same app on the same listening socket (the kernel hands each new connection to one of them)
over an :class:`~modeldeploy.process_engine.attached.AttachedRegistry`. Each worker's batcher
gathers what every front sends.

The first front watches the others as it watches the workers: one that exits is started again
after a backoff (its connections are lost; the others go on serving). Every second each other
front sends its own metrics to the first and gets the rest back, so ``/metrics`` on any front
counts every front's requests. SIGTERM drains every front; the first stops the workers last.
"""

from __future__ import annotations

import logging
import multiprocessing
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from prometheus_client import generate_latest

from .. import collector
from ..config import Config
from ..logs import LogSettings
from ..plugins import get_catalog
from ..process_engine.attached import AttachedRegistry
from ..process_engine.client import RESTART_BACKOFF, STABLE_SECONDS, WorkerAddress
from ..process_engine.worker import exit_with_parent, name_this_process
from .http_server import http_server_for
from .process_exit import exit_now

log = logging.getLogger(__name__)

#: What ps and top show for front process N: this and N.
FRONT_PROCESS_NAME = "mdeploy-front-"
#: How often each further front trades metrics with the first (seconds): how stale the other
#: fronts' request counts in a ``/metrics`` answer may be.
METRICS_SYNC_SECONDS = 1.0


@dataclass(eq=False)
class _Front:
    """A further front process, as the first front keeps it."""

    index: int
    process: Any = None
    #: Its last metrics (its own, without the workers'), and those of the processes it replaced:
    #: counted still, so that the fronts' request counters never go back.
    metrics: str = ""
    replaced: list[str] = field(default_factory=list)
    #: Set once it has exited for good (the server is stopping).
    ended: threading.Event = field(default_factory=threading.Event)


class FrontProcesses:
    """Fronts 1 to ``count - 1`` (the first front, 0, is this process): started, started again when
    they exit, asked to drain and stopped."""

    def __init__(self, config: Config, count: int, addresses: Sequence[WorkerAddress],
                 sockets: Sequence[socket.socket], log_settings: LogSettings) -> None:
        self._config, self._addresses, self._sockets = config, list(addresses), list(sockets)
        self._log_settings = log_settings
        self._fronts = [_Front(index) for index in range(1, count)]
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def start(self) -> None:
        for front in self._fronts:
            self._spawn(front)
            threading.Thread(target=self._supervise, args=(front,), name=f"modeldeploy-front-{front.index}",
                             daemon=True).start()

    def metric_texts(self) -> list[str]:
        """The other fronts' own metrics, as each last sent them (with those of the processes they replaced)."""
        with self._lock:
            return self._counted_except(None)

    def _counted_except(self, live: _Front | None) -> list[str]:
        """Every front's metrics but ``live``'s own (the processes it replaced still count); under the lock."""
        return [text for front in self._fronts for text in (*front.replaced, front.metrics)
                if text and not (front is live and text is front.metrics)]

    def ask_to_drain(self) -> None:
        """SIGTERM every front: each stops accepting and finishes its requests (as this one does)."""
        with self._lock:
            self._stopping.set()
            for front in self._fronts:
                if front.process is not None and front.process.is_alive():
                    front.process.terminate()

    def wait(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the fronts to exit after :meth:`ask_to_drain`; kill those left."""
        deadline = time.monotonic() + seconds
        for front in self._fronts:
            if not front.ended.wait(max(0.0, deadline - time.monotonic())):
                log.warning("front process %d had not stopped after its grace period; killing it", front.index)
                front.process.kill()
                front.ended.wait(5)

    def _spawn(self, front: _Front) -> None:
        ours, theirs = multiprocessing.Pipe()
        with self._lock:
            if self._stopping.is_set():  # stopping while it waited to be started again
                return
            process = multiprocessing.get_context("spawn").Process(
                target=run_front, name=f"modeldeploy-front-{front.index}",
                args=(self._config, self._addresses, self._sockets, theirs, front.index, self._log_settings))
            process.start()
            if front.metrics:
                front.replaced.append(front.metrics)
            front.process, front.metrics = process, ""
        theirs.close()
        threading.Thread(target=self._trade_metrics, args=(front, ours),
                         name=f"modeldeploy-front-{front.index}-metrics", daemon=True).start()

    def _supervise(self, front: _Front) -> None:
        attempt = 0
        while True:
            started = time.monotonic()
            front.process.join()  # only here: a second thread joining could miss its exit
            if self._stopping.is_set():
                front.ended.set()
                return
            attempt = 1 if time.monotonic() - started > STABLE_SECONDS else attempt + 1
            delay = RESTART_BACKOFF.delay(attempt)
            log.error("front process %d exited with code %s; it is started again in %.0f s (the other fronts "
                      "go on serving)", front.index, front.process.exitcode, delay)
            if not self._stopping.wait(delay):
                self._spawn(front)  # unless stopping meanwhile: then the join above returns at once

    def _trade_metrics(self, front: _Front, connection: Connection) -> None:
        """Answer ``front``'s metrics with this front's and the others' (until it exits)."""
        with connection:
            while True:
                try:
                    _, text = connection.recv()
                    with self._lock:
                        front.metrics = text
                        others = self._counted_except(front)
                    connection.send([generate_latest().decode("utf-8"), *others])
                except (EOFError, OSError):
                    return


class _PeerMetrics:
    """A further front's view of the other fronts' metrics: traded with the first front every second."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._others: list[str] = []

    def __call__(self) -> list[str]:
        return self._others

    def keep_trading(self) -> None:
        while True:
            try:
                self._connection.send(("metrics", generate_latest().decode("utf-8")))
                self._others = self._connection.recv()
            except (EOFError, OSError):
                return  # the first front is gone, and this process with it (exit_with_parent)
            time.sleep(METRICS_SYNC_SECONDS)


def run_front(config: Config, addresses: Sequence[WorkerAddress], sockets: Sequence[socket.socket],
              connection: Connection, index: int, log_settings: LogSettings) -> None:
    """A further front's main (the target of a spawned process): serve the app on ``sockets`` until
    SIGTERM, then drain (the workers are the first front's to stop)."""
    from ..app import create_app

    log_settings.apply()
    name_this_process(f"{FRONT_PROCESS_NAME}{index}")
    exit_with_parent()
    registry = AttachedRegistry(config, addresses, index, get_catalog())
    peers = _PeerMetrics(connection)
    registry.share_front_metrics(peers)
    app = create_app(registry=registry)
    server = http_server_for(app, config, registry.names, sockets)
    server.stop_on_signals()  # the first front sends SIGTERM when it stops (a terminal's Ctrl-C reaches all)
    collector.enable()
    registry.start(background=False)  # the workers' statuses first: they may have been serving for long
    threading.Thread(target=peers.keep_trading, name="modeldeploy-front-metrics", daemon=True).start()
    server.serve()
    unfinished = server.drain(stop_models=lambda: registry.close(timeout=0))
    if unfinished:
        log.warning("front process %d: %d request(s) were still running after server.shutdown_grace_seconds",
                    index, unfinished)
    exit_now(0)
