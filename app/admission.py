"""Refuse what a model cannot take before Flask runs, cheaply, and hold refusals back in a storm.

When a model is saturated, clients that retry at once (load balancers, impatient scripts, ``wrk``)
turn every refusal into another request. Under waitress a 503 through Flask cost about 790 us of
CPU (bench/results-refusal-cost.md), much of it holding the GIL that the model's thread needs
between torch operations, so turning work away cost more than doing it
(bench/results-overload-before.md). This WSGI layer, in
front of the Flask app, decides from the URL, the ``X-Request-Timeout`` header and at most the
body's first bytes (the model name of a ``/predict`` body; nothing is parsed or tokenized)
whether the model would refuse the request (not ready, queue full, or the predicted wait longer
than the request's deadline) and answers that 503 itself, with the same body, headers, metrics
and access line as the app would. Anything it cannot judge cheaply goes to Flask, which checks
everything again.

A refusal that comes sooner than its client can use it only invites the next one. Beyond
``server.max_refusals_per_second``, each refusal is held back for its turn before it is sent, at
no cost where the HTTP server offers a way to delay a response without holding a thread
(:data:`HOLD_RESPONSE`, which ``modeldeploy serve`` provides): clients retrying at once then send
at most that many requests a second, whatever their number, and the CPU stays with the models.
Only requests sent as soon as their connection's last answer arrived (a 503 or a 200: both are
how a storm client behaves), and new connections beyond the rate, wait for their turn
(:class:`RefusalPacer`): a client that paused after its last answer is told at once, storm or
not, as long as such clients stay within the rate.
"""

from __future__ import annotations

import io
import json
import math
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any, NamedTuple

from modeldeploy.errors import InvalidInputError, ModelDeployError, UnknownModelError
from modeldeploy.registry import Registry

from .deadlines import TIMEOUT_ENVIRON_KEY, parse_timeout_header
from .observability import record_request

#: WSGI environ key of a callable ``hold(seconds, on_drop=None)`` that delays sending this request's
#: response without holding the thread that produced it, and calls ``on_drop()`` if the client hangs
#: up before then; HTTP servers offering it set it.
HOLD_RESPONSE = "modeldeploy.hold_response"
#: WSGI environ key of when the request's connection was opened (``time.monotonic()``), where the
#: HTTP server knows it: part of the connection's identity for the pacer (a new connection on a
#: closed one's port is not taken for it), and its sign that the server reports answers too.
CONNECTION_OPENED = "modeldeploy.connection_opened"
#: WSGI environ key of when the connection's last answer, of any status, went out
#: (``time.monotonic()``; None before its first), where the HTTP server knows it: the pacer tells a
#: client that sent at once from one that waited.
CONNECTION_ANSWERED = "modeldeploy.connection_answered"
#: A refusal is never held longer than this (seconds), however long the line of refusals.
MAX_HOLD_SECONDS = 5.0
#: A hold shorter than this (seconds) is not worth one: the HTTP server releases held answers on a
#: grid about this fine, so the refusal goes out at once instead.
MIN_HOLD_SECONDS = 0.02
#: A request on a connection answered less than this long ago (seconds) did not wait: a retry, or a
#: closed-loop client's next request.
RETRY_GAP_SECONDS = 0.05
#: Refusals sent at once in a burst, in seconds of the pacing rate: at the default 200/s, 50, more
#: than a batch of clients answered together (32 by default) who all send again and are refused.
BURST_SECONDS = 0.25
#: Connections whose last refusal the pacer remembers; beyond, the oldest are forgotten.
MAX_REMEMBERED_CONNECTIONS = 65536
PREDICT_ROUTE = "/predict"
#: OIP infer routes: the model name is in the path.
_INFER_PATH = re.compile(r"/v2/models/([^/]+)(/versions/([^/]+))?/infer")
_INFER_ROUTES = ("/v2/models/<name>/infer", "/v2/models/<name>/versions/<version>/infer")
#: ``"model_name": "..."`` in the first bytes of a /predict body; a name needing escapes, or given
#: twice, or later in the body, is left to Flask.
_MODEL_NAME = re.compile(rb'"model_name"\s*:\s*"([a-z0-9][a-z0-9_.-]{0,63})"')
PEEK_BYTES = 4096

StartResponse = Callable[..., Any]


class Refusal(NamedTuple):
    """A 503 decided before Flask: WSGI status line, headers and the JSON body."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes


class _Lane:
    """Generic cell rate pacing: ``rate`` sends a second in the long run, ``burst_seconds`` worth
    of them at once; each send's delay is known when it is taken."""

    def __init__(self, interval: float, burst_seconds: float) -> None:
        self.interval = interval
        self.tolerance = burst_seconds
        #: When the next send is due if sends went out evenly (its "theoretical arrival time").
        self._due = -math.inf

    def take(self, now: float) -> float:
        """Reserve the next send; seconds to wait before it (never more than MAX_HOLD_SECONDS)."""
        due = max(now, self._due)
        self._due = min(due, now + MAX_HOLD_SECONDS + self.tolerance) + self.interval
        return min(max(0.0, due - self.tolerance - now), MAX_HOLD_SECONDS)

    def give_back(self) -> None:
        """A reserved send will not happen: the sends reserved from now on may come one slot sooner."""
        self._due -= self.interval


class RefusalPacer:
    """Spaces refusals at most ``rate`` a second, holding back the retries that came at once.

    A client that retries as soon as it is refused (ignoring ``Retry-After``) makes N clients send
    N / (refusal latency) requests a second; those retries are paced, each waiting for a slot
    (Little's law then sets their latency: N / ``rate``). Refusals go through three lanes, each
    paced at ``rate`` with bursts of ``burst_seconds`` worth at once, and each taking a slot from
    the lanes after it, so that together they stay within ``rate`` and a lane waits only for the
    ones before it:

    1. connections we know: last answered at least ``retry_gap`` seconds before this request
       (their client waited);
    2. connections never answered: a client we do not know yet (a storm of new connections
       queues here, not in front of the known ones). However long a connection was open before
       its first request, it is new: a storm's clients, connecting 512 at once on a busy
       machine, sent their first requests up to 118 ms after their connections opened, like a
       client that had waited, and as known clients they held the others' refusals 0.3-0.9 s;
    3. requests sent within ``retry_gap`` of the connection's last answer: retries, and clients
       sending their next request as soon as a 200 came (in a storm, a third of its refusals went
       to such clients; counted as known, they crowded out the clients that waited).

    The connection's last answer is its last refusal from this pacer, or a later one the HTTP
    server reports (``answered``). Where the server does not say when connections open
    (``opened``), it may not report their answers either: every connection then counts as known
    until refused.
    """

    def __init__(self, rate: float, retry_gap: float = RETRY_GAP_SECONDS, burst_seconds: float = BURST_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        interval = 1.0 / rate if rate > 0 else 0.0
        self.retry_gap = retry_gap
        self._clock = clock
        self._lanes = [_Lane(interval, burst_seconds) for _ in range(3)]
        #: connection -> (when its last refusal was sent (monotonic), the lane it went through);
        #: entries older than the gap are purged.
        self._refused_at: dict[Hashable, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def delay(self, connection: Hashable, opened: float | None = None, answered: float | None = None) -> float:
        """Seconds to hold the refusal about to be sent on ``connection`` (0: send it now), which was
        opened at ``opened`` (None: the server does not say) and last answered at ``answered``
        (None: never, or not reported); monotonic seconds."""
        if not self._lanes[0].interval:
            return 0.0
        now = self._clock()
        with self._lock:
            lane = self._lane(connection, opened is not None, answered, now)
            wait = self._lanes[lane].take(now)
            for later in self._lanes[lane + 1:]:
                later.take(now)
            wait = wait if wait >= MIN_HOLD_SECONDS else 0.0
            self._remember(connection, (now + wait, lane), now)  # the gap counts from when the client is told
        return wait

    def release(self, connection: Hashable) -> None:
        """The client of ``connection`` hung up while its refusal was held: give back the slots it
        took, so that a storm's departed clients do not keep the ones after them waiting."""
        now = self._clock()
        with self._lock:
            sent_at, lane = self._refused_at.get(connection, (-math.inf, 0))
            if sent_at <= now:
                return
            del self._refused_at[connection]
            for taken in self._lanes[lane:]:
                taken.give_back()

    def _lane(self, connection: Hashable, reported: bool, answered: float | None, now: float) -> int:
        """The lane of a refusal on ``connection``; ``reported``: the HTTP server reports the
        connection's answers, so one without any is new."""
        last_refused = self._refused_at.get(connection)
        last = max(last_refused[0] if last_refused is not None else -math.inf,
                   answered if answered is not None else -math.inf)
        if last > -math.inf:
            return 2 if now - last < self.retry_gap else 0
        return 1 if reported else 0

    def _remember(self, connection: Hashable, refusal: tuple[float, int], now: float) -> None:
        if len(self._refused_at) >= MAX_REMEMBERED_CONNECTIONS:
            self._refused_at = {key: last for key, last in self._refused_at.items() if now - last[0] < self.retry_gap}
            if len(self._refused_at) >= MAX_REMEMBERED_CONNECTIONS:  # all recent: forget the oldest half
                recent = sorted(self._refused_at.items(), key=lambda entry: entry[1][0])
                self._refused_at = dict(recent[len(recent) // 2:])
        self._refused_at[connection] = refusal


class AdmissionGate:
    """WSGI middleware over the Flask app: answers 503 for requests their model would refuse."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]], registry: Registry) -> None:
        self.app = app
        self.registry = registry
        self.max_body_bytes = registry.config.server.max_body_bytes
        self.pacer = RefusalPacer(registry.config.server.max_refusals_per_second)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        refusal = self.refusal(environ, arrived=True)
        if refusal is None:
            return self.app(environ, start_response)
        start_response(refusal.status, refusal.headers)
        return [refusal.body]

    def judge_before_dispatch(self, environ: dict[str, Any]) -> Refusal | None:
        """:meth:`refusal` for the HTTP server, with a request's first environ keys, before a thread
        is given the request: one let through counts as queued until it reaches a thread."""
        return self.refusal(environ, reserve=True)

    def refusal(self, environ: dict[str, Any], reserve: bool = False, arrived: bool = False) -> Refusal | None:
        """The 503 to answer this request with, or None to pass it on; when refusals are paced, the
        refusal is held (``environ[HOLD_RESPONSE]``) before it is returned. ``reserve``: judged
        before a thread has the request, which holds a place in the queue if let through;
        ``arrived``: judged on its thread, where such a place ends."""
        target = self._target(environ)
        if target is None:
            return None
        route, name = target
        try:
            timeout = parse_timeout_header(environ.get(TIMEOUT_ENVIRON_KEY))
            served = self.registry.model(name)
        except (InvalidInputError, UnknownModelError):
            return None  # Flask answers these with their 400 / 404
        if arrived:
            served.request_arrived()
        reason = served.admission_refusal(timeout, reserve)
        return None if reason is None else self._refuse(environ, route, name, reason)

    def _target(self, environ: dict[str, Any]) -> tuple[str, str] | None:
        """(route template, model name) of a request that asks a model for work, when both can be
        known without parsing the body."""
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", "")
        if path == PREDICT_ROUTE and method in ("POST", "GET"):
            name = self._peek_model_name(environ) if self._plain_body_within_limit(environ) else None
            return (PREDICT_ROUTE, name) if name is not None else None
        match = _INFER_PATH.fullmatch(path) if method == "POST" else None
        # a body Flask refuses outright (400, 413) is answered that way first
        if match is None or not self._plain_body_within_limit(environ):
            return None
        return _INFER_ROUTES[match.group(2) is not None], match.group(1)

    def _plain_body_within_limit(self, environ: dict[str, Any]) -> bool:
        """Whether the body has a length within ``server.max_body_bytes`` and no Content-Encoding."""
        if environ.get("HTTP_CONTENT_ENCODING", "identity").lower() != "identity":
            return False
        try:
            return 0 < int(environ.get("CONTENT_LENGTH") or 0) <= self.max_body_bytes
        except ValueError:
            return False

    @staticmethod
    def _peek_model_name(environ: dict[str, Any]) -> str | None:
        """The model a /predict body names, read from its first bytes; the body is put back for
        Flask. None when that cannot be known so cheaply (named twice, escaped, far into the body)."""
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        environ["wsgi.input"] = io.BytesIO(body)
        names = _MODEL_NAME.findall(body, 0, PEEK_BYTES)
        return names[0].decode() if len(names) == 1 else None

    def _refuse(self, environ: dict[str, Any], route: str, name: str, reason: ModelDeployError) -> Refusal:
        started = time.perf_counter()
        message = str(reason)
        error: Any = message if route != PREDICT_ROUTE else {"status": 503, "message": message}
        body = json.dumps({"error": error}).encode()
        request_id = record_request(environ, name, route, 503, time.perf_counter() - started)
        hold = environ.get(HOLD_RESPONSE)
        if hold is not None:
            opened = environ.get(CONNECTION_OPENED)
            # the time it opened tells a new connection from a closed one whose port it reuses
            connection = (environ.get("REMOTE_ADDR"), environ.get("REMOTE_PORT"), opened)
            delay = self.pacer.delay(connection, opened, environ.get(CONNECTION_ANSWERED))
            if delay > 0:
                hold(delay, lambda: self.pacer.release(connection))
        return Refusal("503 SERVICE UNAVAILABLE", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("Retry-After", str(getattr(reason, "retry_after", 1))), ("X-Request-ID", request_id)], body)


def admission_gate(app: Any) -> AdmissionGate | None:
    """The gate in front of a Flask app made by ``create_app`` (None for any other app)."""
    gate = getattr(app, "wsgi_app", None)
    return gate if isinstance(gate, AdmissionGate) else None
