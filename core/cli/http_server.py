"""The HTTP server under the app: waitress, with connection timeouts and a graceful drain.

waitress reads sockets in one event loop and runs requests on a thread pool. What it lacks for a
server behind an orchestrator is added here:

- **Idle connections never lock anyone out.** waitress stops accepting once its connection cap
  is reached, and idle keep-alive sockets count towards it; with the cap at twice the thread pool,
  a few hundred idle clients kept new clients and health checks out. The cap now follows the
  process's open-file limit (raised to its hard limit), the loop uses ``poll()`` (``select()``
  cannot watch more than 1024 sockets), and an idle connection is closed after
  ``server.idle_timeout_seconds``.
- **A request that stops arriving is answered.** One that has started but whose next bytes do not
  come for ``read_timeout_seconds`` (a ``Content-Length`` longer than the body), or that is not
  whole after ``request_timeout_seconds`` (a slow-drip client), gets a JSON 408 and is closed.
- **A refusal costs no thread.** When the app offers a cheap judge of requests (the admission
  gate's :meth:`~modeldeploy.app.admission.AdmissionGate.judge_before_dispatch`), each complete
  request is put to it on the loop's thread as soon as it is parsed, and a refusal is written
  there and then: no task is queued and no pool thread wakes. In a retry storm that hand-off, not
  the refusal, was most of what a 503 cost.
- **A response can be held back without a thread.** The app may call ``environ[HOLD_RESPONSE]``
  (seconds) to delay sending its answer; the connection keeps it until then while the thread
  serves others. The admission gate paces refusals this way in a retry storm.
- **A client that hangs up cancels its request.** A connection stays readable while its request
  runs (waitress's ``channel_request_lookahead``), so a client's close is seen at once; the
  request's :class:`~modeldeploy.cancellation.Cancellation` (``environ[CANCELLATION]``) is then
  cancelled and its items leave the model's queue instead of being computed for nobody.
- **The loop does not walk every connection on each turn** (:mod:`.poll_loop`): with hundreds of
  clients in a retry storm, that walk was most of what the front cost.
- **SIGTERM drains.** The listening sockets close at once (new connections are refused), requests
  in flight finish and their answers are sent, for up to ``shutdown_grace_seconds``; then the
  models stop (what is still queued is answered 503) and the process exits 0.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import math
import resource
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher, WSGITask
from waitress.utilities import build_http_date

from ..app.admission import CONNECTION_ANSWERED, CONNECTION_OPENED, HOLD_RESPONSE, Refusal, admission_gate
from ..app.deadlines import CANCELLATION
from ..cancellation import Cancellation
from ..config import Config, ServerConfig
from .poll_loop import PollLoop, serving

log = logging.getLogger(__name__)

#: File descriptors kept back from the connection cap for model files, logs and pipes.
FD_RESERVE = 256
#: How often (seconds) connections are checked for timeouts, and the longest the loop sleeps.
CHECK_INTERVAL = 0.5
#: Held responses are released on this grid (seconds), so that those falling due together go out
#: in one turn of the loop rather than a turn each.
HOLD_TICK = 0.02
#: After the grace period, how long answers to cancelled requests may take to go out.
FINAL_FLUSH_SECONDS = 2.0
#: waitress refuses bodies this many times over the app's limit before reading them; smaller
#: excesses reach the app, which answers a JSON 413.
HARD_BODY_LIMIT_FACTOR = 4
#: Request headers waitress passes to the app without the ``HTTP_`` prefix.
_UNPREFIXED_HEADERS = ("CONTENT_LENGTH", "CONTENT_TYPE")

#: Judges a request from its WSGI environ (before any app runs): a refusal to send, or None.
EarlyJudge = Callable[[dict[str, Any]], Refusal | None]


@dataclass(frozen=True)
class ConnectionTimeouts:
    """Seconds: idle keep-alive, silence in the middle of a request, and one whole request."""

    idle: float
    read: float
    request: float


class _Task(WSGITask):
    """A request whose app may hold its response back (:data:`HOLD_RESPONSE`), learns when its
    client hangs up (:data:`CANCELLATION`) and when the connection's last answer went out."""

    def get_environment(self) -> dict[str, Any]:
        environ = super().get_environment()
        environ[HOLD_RESPONSE] = self.channel.hold
        environ[CONNECTION_OPENED] = self.channel.opened
        environ[CONNECTION_ANSWERED] = self.channel.answered_at
        environ[CANCELLATION] = self.channel.cancellation
        return environ

    def finish(self) -> None:
        super().finish()
        self.channel.mark_answered()


class _Channel(HTTPChannel):
    """A connection that remembers when the request it is receiving began, and that sends nothing
    before ``held_until`` (monotonic seconds)."""

    task_class = _Task
    request_started = 0.0
    held_until = 0.0
    #: When the last answer on this connection went out (monotonic; a held one when it is due);
    #: None before the first.
    answered_at: float | None = None
    _on_drop: Callable[[], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened = time.monotonic()
        #: Cancelled when the client hangs up; shared by the requests of one connection, which
        #: waitress runs one at a time (they all lose their client together).
        self.cancellation = Cancellation()
        self.server.touch(self)  # its file descriptor may be a closed connection's, reused

    def service(self) -> None:
        serving(self)  # the trigger pulls of this task name this connection to the loop
        try:
            super().service()
        finally:
            serving(None)

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.time()
        return super().received(data)

    def readable(self) -> bool:
        # once the client has closed, its socket polls readable forever: stop asking
        return self.connected and bool(super().readable())

    def handle_read(self) -> None:
        super().handle_read()
        if not self.connected:
            self.cancellation.cancel()

    def handle_close(self) -> None:
        super().handle_close()
        self.cancellation.cancel()
        self.handle_hang_up()

    def hang_up_watched(self) -> bool:
        """Whether the loop should tell this connection when its client hangs up: its answer is held
        (it is not read meanwhile, so a close would go unseen until the answer is sent)."""
        return self._on_drop is not None and self._holding()

    def handle_hang_up(self) -> None:
        """The client closed (or half-closed) while its answer is held: tell whoever held it, once.
        The answer still goes out when due, in case a half-closed client reads it."""
        on_drop, self._on_drop = self._on_drop, None
        if on_drop is not None and time.monotonic() < self.held_until:
            try:
                on_drop()
            except Exception:  # the connection is gone either way
                log.exception("a held response's on_drop failed")

    def answer_early(self, judge: EarlyJudge) -> bool:
        """Put the first waiting request to ``judge``; if it refuses, send the refusal as the
        request's answer and drop the request (True). Runs where a task would be queued, with
        ``requests_lock`` held by the caller."""
        request = self.requests[0]
        if request.error or request.version not in ("1.0", "1.1"):
            return False
        body = request.get_body_stream()
        start = body.tell()
        environ = {key if key in _UNPREFIXED_HEADERS else "HTTP_" + key: value
                   for key, value in request.headers.items()}
        environ.update(REQUEST_METHOD=request.command, PATH_INFO=request.path, REMOTE_ADDR=self.addr[0],
                       REMOTE_PORT=str(self.addr[1]))
        environ["wsgi.input"], environ[HOLD_RESPONSE], environ[CONNECTION_OPENED] = body, self.hold, self.opened
        environ[CONNECTION_ANSWERED] = self.answered_at
        try:
            refusal = judge(environ)
        except Exception:  # the app, on a thread, answers (and logs) whatever went wrong
            log.exception("the admission judge failed on %s %s; passing the request on", request.command,
                          request.path)
            return False
        finally:
            body.seek(start)  # a task reads the body from where it began
        if refusal is None:
            return False
        close = _closes_after(request)
        head = [f"HTTP/{request.version} {refusal.status}", *(f"{_capitalized(key)}: {value}"
                                                              for key, value in refusal.headers),
                f"Server: {self.adj.ident}", f"Date: {build_http_date(time.time())}"]
        if close:
            head.append("Connection: close")
        elif request.version == "1.0":
            head.append("Connection: Keep-Alive")
        _append_output(self, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + refusal.body)
        self.mark_answered()
        request.close()
        self.requests.pop(0)
        if close:
            self.close_when_flushed = True
            for waiting in self.requests:
                waiting.close()
            self.requests = []
        self.last_activity = time.time()
        return True

    def mark_answered(self) -> None:
        """An answer was written: it goes out now, or when its hold falls due."""
        self.answered_at = max(time.monotonic(), self.held_until)

    def hold(self, seconds: float, on_drop: Callable[[], None] | None = None) -> None:
        """Send what is written from now on no sooner than ``seconds`` from now (rounded up to
        :data:`HOLD_TICK`, so held responses go out together in one turn of the loop); call
        ``on_drop()`` if the connection closes before then."""
        self.held_until = math.ceil((time.monotonic() + seconds) / HOLD_TICK) * HOLD_TICK
        self._on_drop = on_drop
        self.server.wake_at(self.held_until, self)

    def _holding(self) -> bool:
        return bool(self.held_until) and time.monotonic() < self.held_until and not self.will_close

    def writable(self) -> bool:
        if self._holding() or self._answer_in_progress():
            return False
        return bool(super().writable())

    def _answer_in_progress(self) -> bool:
        """A task is still writing a small response: waitress's ``handle_write`` would send nothing
        (it leaves short outputs to the end of the task, which pulls the trigger), so polling for
        POLLOUT now would only return at once, again and again. With many connections that spin
        held the GIL against the task threads it waits for: 32 clients of a model that does
        nothing got 400 answers/s, 2.6 ms of CPU each, against 1,200/s for one client."""
        return bool(self.requests) and self.total_outbufs_len < self.adj.send_bytes and not (
            self.will_close or self.close_when_flushed)

    def _flush_some(self, do_close: bool = True) -> bool:
        # waitress flushes from the task thread as soon as a response is written; a held one waits
        # in the buffer for the loop, which wakes when it is due
        return False if self._holding() else bool(super()._flush_some(do_close))


class _Server(TcpWSGIServer):
    """One listening socket whose periodic maintenance enforces :class:`ConnectionTimeouts`."""

    channel_class = _Channel

    def __init__(self, *args: Any, timeouts: ConnectionTimeouts, wake_at: Callable[[float, HTTPChannel], None],
                 loop: PollLoop | None, judge: EarlyJudge | None, **kwargs: Any) -> None:
        self.timeouts = timeouts
        self.wake_at = wake_at
        self.loop = loop
        self.judge = judge
        super().__init__(*args, **kwargs)

    def add_task(self, channel: _Channel) -> None:
        """Queue a task for ``channel``'s first request, unless the judge refuses it (and the next
        waiting ones) here and now."""
        if self.judge is not None:
            while channel.requests and channel.answer_early(self.judge):
                pass
            if not channel.requests:
                return
        super().add_task(channel)

    def touch(self, channel: HTTPChannel) -> None:
        if self.loop is not None:
            self.loop.touch(channel)

    def pull_trigger(self) -> None:
        if self.loop is not None:  # from a task thread: the loop must look at its connection again
            self.loop.touch_serving()
        super().pull_trigger()

    def maintenance(self, now: float) -> None:
        if self.loop is not None:
            self.loop.sweep()  # timeouts may close any connection
        for channel in list(self.active_channels.values()):
            if channel.requests or channel.will_close or channel.close_when_flushed:
                continue  # a request is being answered, or the connection is closing already
            if channel.request is None:
                if channel.last_activity < now - self.timeouts.idle and not channel.total_outbufs_len:
                    channel.will_close = True
            elif channel.last_activity < now - self.timeouts.read:
                _answer_408(channel, f"no bytes of the request arrived for {self.timeouts.read:g} s (is "
                                     "Content-Length larger than the body sent?)")
            elif channel.request_started < now - self.timeouts.request:
                _answer_408(channel, f"the request was not received in full within {self.timeouts.request:g} s")


def _answer_408(channel: HTTPChannel, why: str) -> None:
    """Answer the half-received request with a JSON 408 and close the connection once it is sent."""
    body = json.dumps({"error": {"status": 408, "message": f"request timeout: {why}; send the whole request "
                                                           "promptly"}}).encode()
    head = (f"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\nServer: modeldeploy\r\n\r\n").encode()
    _append_output(channel, head + body)
    channel.request = None
    channel.close_when_flushed = True
    log.info("408 to %s: %s", channel.addr, why)


def _append_output(channel: HTTPChannel, data: bytes) -> None:
    """Buffer ``data`` for the loop to send (it must not wait for a flush, as a task's write would)."""
    with channel.outbuf_lock:
        channel.outbufs[-1].append(data)
        channel.current_outbuf_count += len(data)
        channel.total_outbufs_len += len(data)


def _capitalized(header: str) -> str:
    """``X-Request-ID`` as waitress writes it: ``X-Request-Id``."""
    return "-".join(part.capitalize() for part in header.split("-"))


def _closes_after(request: Any) -> bool:
    """Whether the connection closes after answering ``request`` (HTTP/1.1 keeps it unless told
    otherwise; HTTP/1.0 closes unless asked to keep it alive), as waitress decides."""
    connection = request.headers.get("CONNECTION", "").lower()
    return connection == "close" if request.version == "1.1" else connection != "keep-alive"


def connection_limit(configured: int) -> int:
    """``configured``, or (0) as many connections as the open-file limit allows, less a reserve;
    the soft limit is raised to the hard one first, as most servers do."""
    if configured:
        return configured
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return max(100, soft - FD_RESERVE)


def http_server_for(app: Callable[..., Any], config: Config, names: Sequence[str],
                    sockets: Sequence[socket.socket] = ()) -> HttpServer:
    """The HTTP server of an app made by ``create_app`` serving models ``names``: its threads sized
    for them (``Config.http_threads``), its admission gate judging requests on the loop thread, bodies
    far over ``server.max_body_bytes`` refused from their headers (smaller excesses get the app's
    JSON 413); bound to ``config``'s host and port, or serving ``sockets``. Raises OSError when the
    address cannot be bound."""
    gate = admission_gate(app)
    threads = config.http_threads(names)
    log.info("%d HTTP threads for %d model(s)", threads, len(names))
    return HttpServer(app, config.server, threads, config.server.max_body_bytes * HARD_BODY_LIMIT_FACTOR,
                      judge=gate.judge_before_dispatch if gate is not None else None, sockets=sockets)


class HttpServer:
    """The app on every address ``host`` resolves to, served until a stop signal, then drained."""

    def __init__(self, app: Callable[..., Any], config: ServerConfig, threads: int, max_body_bytes: int,
                 judge: EarlyJudge | None = None, sockets: Sequence[socket.socket] = ()) -> None:
        """``judge``, when given, sees each request before a thread does (:meth:`_Channel.answer_early`);
        ``sockets``, listening sockets already bound (another front process's), served instead of
        binding ``config``'s host and port."""
        self.config = config
        where: dict[str, Any] = {"sockets": list(sockets)} if sockets else {"host": config.host, "port": config.port}
        self.adjustments = Adjustments(
            **where, threads=threads, ident="modeldeploy",
            connection_limit=connection_limit(config.connection_limit), asyncore_use_poll=True,
            max_request_body_size=max_body_bytes, cleanup_interval=1,
            channel_request_lookahead=1,  # read while a request runs, so a client's close is seen
        )
        timeouts = ConnectionTimeouts(config.idle_timeout_seconds, config.read_timeout_seconds,
                                      config.request_timeout_seconds)
        self.map: dict[int, Any] = {}
        self.loop = PollLoop(self.map) if hasattr(select, "poll") else None  # Windows: wasyncore's select()
        self.dispatcher = ThreadedTaskDispatcher()
        self.dispatcher.set_thread_count(threads)
        self.threads = threads
        #: (monotonic time, tie-breaker, connection): when each held response becomes due (a heap).
        self._wakeups: list[tuple[float, int, HTTPChannel]] = []
        self._wakeups_lock = threading.Lock()
        self._wakeup_order = itertools.count()
        serving = dict(dispatcher=self.dispatcher, adj=self.adjustments, timeouts=timeouts, wake_at=self._wake_at,
                       loop=self.loop, judge=judge)
        self.listeners = [
            _Server(app, self.map, True, sock, bind_socket=False, **serving,
                    sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()))
            for sock in sockets
        ] or [_Server(app, self.map, sockinfo=sockinfo, **serving) for sockinfo in self.adjustments.listen]
        self._stop = threading.Event()

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets, for other front processes to serve too."""
        return [listener.socket for listener in self.listeners]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(listener.effective_host, int(listener.effective_port)) for listener in self.listeners]

    def grow_threads(self, threads: int) -> bool:
        """Serve with ``threads`` task threads from now on, if that is more (a model added at run
        time needs its share of the pool, see ``Config.http_threads``); never fewer. True if it grew."""
        if threads <= self.threads:
            return False
        self.threads = threads
        self.dispatcher.set_thread_count(threads)
        return True

    def stop_on_signals(self) -> None:
        """SIGTERM and Ctrl-C start the drain (the loop notices within :data:`CHECK_INTERVAL`)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self._stop.set())

    def serve(self) -> None:
        """Answer requests until a stop signal."""
        while not self._stop.is_set():
            self._run_loop_once()

    def drain(self, stop_models: Callable[[], None]) -> int:
        """Refuse new connections, let requests in flight finish within the grace period, then
        ``stop_models()`` and send what that answers. Returns how many requests were still running."""
        for listener in self.listeners:
            listener.accepting = False
            listener.del_channel()
            listener.socket.close()
        log.info("stopping: no new connections; waiting up to %gs for requests in flight",
                 self.config.shutdown_grace_seconds)
        deadline = time.monotonic() + self.config.shutdown_grace_seconds
        while self._close_idle_channels() and time.monotonic() < deadline:
            self._run_loop_once()
        still_running = self._close_idle_channels()
        stop_models()
        flush_until = time.monotonic() + FINAL_FLUSH_SECONDS
        while self._close_idle_channels() and time.monotonic() < flush_until:
            self._run_loop_once()
        self.dispatcher.shutdown(cancel_pending=True, timeout=1)
        wasyncore.close_all(self.map)
        return still_running

    def _wake_at(self, when: float, channel: HTTPChannel) -> None:
        """Have the loop wake at ``when`` and send ``channel``'s held response; called from task
        threads, whose end of task wakes the loop to see it."""
        with self._wakeups_lock:
            heapq.heappush(self._wakeups, (when, next(self._wakeup_order), channel))

    def _poll_timeout(self) -> float:
        """Until the next held response is due, at most :data:`CHECK_INTERVAL`; the loop looks
        again at the connections whose responses are due now."""
        now = time.monotonic()
        with self._wakeups_lock:
            while self._wakeups and self._wakeups[0][0] <= now:
                _, _, channel = heapq.heappop(self._wakeups)
                if self.loop is not None:
                    self.loop.touch(channel)
            due = self._wakeups[0][0] - now if self._wakeups else CHECK_INTERVAL
        return min(CHECK_INTERVAL, max(due, 0.0005))

    def _run_loop_once(self) -> None:
        if self.loop is not None:
            self.loop.run_once(self._poll_timeout())
        else:
            wasyncore.loop(timeout=self._poll_timeout(), map=self.map, use_poll=False, count=1)
        if self._stop.is_set():  # the closed listeners are no longer polled, so their upkeep runs here
            for listener in self.listeners:
                listener.maintenance(time.time())

    def _close_idle_channels(self) -> int:
        """Close connections with nothing in flight; return how many still have a request."""
        if self.loop is not None:
            self.loop.sweep()
        busy = 0
        for channel in list(self.map.values()):
            if not isinstance(channel, HTTPChannel) or channel.will_close:
                continue
            if channel.requests or channel.request is not None or channel.total_outbufs_len:
                busy += 1
            else:
                channel.will_close = True
        return busy
