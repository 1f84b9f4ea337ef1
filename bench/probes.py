"""Latency probes: what a health checker, a person opening the homepage and one more client see
while the server is under load.

Each probe runs on its own thread with its own keep-alive connection, and sends its next request
one interval (1/rate: 100 ms by default) after its last answer, so it adds little load, its answers
are not queued behind its own earlier requests on a shared connection, and it is always a client
that waited: never one that sends as soon as it is answered, which the server paces as part of a
storm (app/admission.py). So after a slow 200 it does not catch up. The probes are clients already
connected when the load begins (a health checker, a load balancer's pooled connection): each opens
its connection and makes one request, not recorded, before :meth:`Probes.__enter__` returns.
Latency is split by status, since under overload a fast 503 and a slow 200 mean different things;
a failed connection is reopened and that time counts in the probe's latency, as a client would
feel it.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

from loadgen import _percentiles

TIMEOUT, FAILED = "timeout", "failed"


@dataclass(frozen=True)
class Target:
    """One kind of probe: ``method path`` with an optional JSON body."""

    label: str
    method: str
    path: str
    body: bytes | None = None


class Probes:
    """Probes of every target against ``host:port`` between :meth:`start` and :meth:`stop`."""

    def __init__(self, host: str, port: int, targets: Sequence[Target], rate: float = 10.0,
                 timeout: float = 10.0) -> None:
        self.host, self.port, self.interval, self.timeout = host, port, 1.0 / rate, timeout
        self.targets = list(targets)
        #: Per target: (status, latency ms, when it was sent: ``time.monotonic()``) of each probe.
        self.samples: dict[str, list[tuple[str, float, float]]] = {target.label: [] for target in self.targets}
        self._stop = threading.Event()
        self._connected = [threading.Event() for _ in self.targets]
        self._threads = [threading.Thread(target=self._probe, args=(target, connected), daemon=True)
                         for target, connected in zip(self.targets, self._connected)]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        for connected in self._connected:
            connected.wait(self.timeout + 5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def _probe(self, target: Target, connected: threading.Event) -> None:
        headers = {"Content-Type": "application/json"} if target.body else {}
        connection, _ = self._exchange(None, target, headers)  # connected before the load begins
        connected.set()
        while not self._stop.is_set():
            sent, started = time.monotonic(), time.perf_counter()
            connection, status = self._exchange(connection, target, headers)
            self.samples[target.label].append((status, (time.perf_counter() - started) * 1000, sent))
            self._stop.wait(self.interval)
        if connection is not None:
            connection.close()

    def _exchange(self, connection: http.client.HTTPConnection | None, target: Target,
                  headers: dict[str, str]) -> tuple[http.client.HTTPConnection | None, str]:
        """One request on ``connection`` (opened first when None): the connection to use next
        (None once closed) and the answer's status, or TIMEOUT / FAILED."""
        try:
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            connection.request(target.method, target.path, body=target.body, headers=headers)
            answer = connection.getresponse()
            answer.read()
            status = str(answer.status)
            if answer.will_close:
                connection.close()
                connection = None
        except TimeoutError:
            status = TIMEOUT
        except (OSError, http.client.HTTPException):
            status = FAILED
        if status in (TIMEOUT, FAILED) and connection is not None:
            connection.close()
            connection = None
        return connection, status

    def summary(self) -> dict[str, Any]:
        """Per target: answers by status, and latency (ms) percentiles by status."""
        out: dict[str, Any] = {}
        for label, samples in self.samples.items():
            by_status: dict[str, list[float]] = {}
            for status, ms, _ in samples:
                by_status.setdefault(status, []).append(ms)
            out[label] = {"counts": {s: len(v) for s, v in sorted(by_status.items())},
                          "latency_ms": {s: _percentiles(v) for s, v in sorted(by_status.items())}}
        return out
