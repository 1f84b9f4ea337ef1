"""Open-loop load: requests arrive as a Poisson process, whatever the server answers or how slowly.

A closed loop (wrk, one request per connection at a time) slows down with the server it
measures, so it can never overload it by more than its connection count, and it hides a slow
answer by sending less. Real users do not wait for each other: here inter-arrival times are drawn
from an exponential law at the offered rate, every request runs on its own task, and its latency
is taken from the moment it was *due* (not when it left), so a generator that fell behind does not
flatter the server (no coordinated omission). What it achieved is recorded next to what was asked:
the rate of requests actually sent and how late they left.

Connections: a pool of keep-alive connections shared by all requests to a server. A request takes
an idle one, or opens a new one when none is idle (it never waits for a connection: that would
close the loop again), and gives it back once answered. Under steady load the pool settles at
about rate x latency connections, each reused many times, so the generator spends its CPU on
requests rather than on TCP handshakes (a connection per request costs a connect and an accept on
the same 2 cores as the server, and piles TIME_WAIT sockets up at 300 requests/s), and the server
sees what it sees behind a keep-alive proxy. Raw asyncio streams rather than an HTTP library keep
a request to ~100 us of Python on one core, so ~300 requests/s leave the core mostly idle.

``period``: the arrivals of the first ``period`` seconds (times and texts) are drawn once and
repeated, so two spans a whole number of periods apart offer the server the very same work: a
soak compares its last minute with its first on equal terms, and what differs is the server.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Statuses of requests that got no HTTP answer.
TIMEOUT, FAILED, DROPPED = "timeout", "failed", "dropped"


@dataclass
class Stream:
    """One Poisson stream: ``rate`` requests/s of ``POST path`` with the given bodies, in turn."""

    label: str
    rate: float
    bodies: Sequence[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    path: str = "/predict"


@dataclass
class Record:
    """One request: when it was due and left (s from the start), its status and latency from due,
    and for an answer other than 200 the server's reason (so an unexpected 503 can be explained)."""

    stream: str
    due: float
    lag: float
    status: str
    latency_ms: float
    done: float
    reason: str = ""


class Pool:
    """Idle keep-alive connections to one server, most recently used first."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one whole HTTP/1.1 request; the status and body of its answer. A reused connection the
        server closed while idle fails before any byte comes back: that is retried once, on a new
        connection (the next idle one may have been closed too: the server closes idle ones together)."""
        for attempt in range(2):
            reused = bool(self.idle) and attempt == 0
            if reused:
                reader, writer = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                self.opened += 1
            try:
                writer.write(raw)
                await writer.drain()
                status, keep, body = await _read_answer(reader)
            except (OSError, asyncio.IncompleteReadError) as exc:
                writer.close()
                stale = isinstance(exc, ConnectionError) or (
                    isinstance(exc, asyncio.IncompleteReadError) and not exc.partial)
                if reused and stale and attempt == 0:
                    continue
                raise
            except BaseException:  # cancelled mid-answer: the connection is in an unknown state
                writer.close()
                raise
            if keep:
                self.idle.append((reader, writer))
            else:
                writer.close()
            return status, body
        raise AssertionError("unreachable")

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """Read one answer; its status, whether the connection can be reused, and its body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.strip().lower(): value.strip() for name, value in
               (line.split(":", 1) for line in lines[1:] if ":" in line)}
    keep = headers.get("connection", "").lower() != "close"
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunks.append((await reader.readexactly(size + 2))[:size])
            if size == 0:
                break
        body = b"".join(chunks)
    else:
        body = await reader.read()  # until the server closes
        keep = False
    return status, keep, body


def reason(body: bytes) -> str:
    """The message of a JSON error answer (``{"error": {"message": ...}}`` or ``{"error": "..."}``),
    else the body's start."""
    try:
        error = json.loads(body)["error"]
        return str(error["message"] if isinstance(error, dict) else error)
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")


def raw_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def run(host: str, port: int, streams: Sequence[Stream], seconds: float, client_timeout: float = 30.0,
        max_in_flight: int = 4000, seed: int = 0, period: float | None = None) -> dict:
    """Offer every stream for ``seconds``, then wait up to ``client_timeout`` for the answers.

    Returns ``records`` (a :class:`Record` per request due), ``seconds``, ``connections_opened``
    and ``generator_cpu_s``. A request due while ``max_in_flight`` are unanswered is not sent
    (status ``dropped``), so a stalled server cannot exhaust the generator's file descriptors.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < max_in_flight + 100 and (hard == resource.RLIM_INFINITY or hard > soft):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    cpu_before = time.process_time()
    result = asyncio.run(_run(host, port, streams, seconds, client_timeout, max_in_flight, seed, period))
    result["generator_cpu_s"] = time.process_time() - cpu_before
    return result


def schedule(rate: float, count: int, seconds: float, rng: random.Random,
             period: float | None = None) -> list[tuple[float, int]]:
    """When each request is due (s from the start) and which of ``count`` bodies it sends: Poisson
    arrivals at ``rate``, the bodies in turn from a random one; with ``period``, the first period's
    arrivals again in every later one."""
    drawn: list[tuple[float, int]] = []
    due, index = rng.expovariate(rate), rng.randrange(count)
    while due < min(seconds, period or seconds):
        drawn.append((due, index))
        index = (index + 1) % count
        due += rng.expovariate(rate)
    if not period:
        return drawn
    repeats = range(math.ceil(seconds / period))
    return [(k * period + due, index) for k in repeats for due, index in drawn if k * period + due < seconds]


async def _run(host: str, port: int, streams: Sequence[Stream], seconds: float, client_timeout: float,
               max_in_flight: int, seed: int, period: float | None) -> dict:
    pool = Pool(host, port)
    records: list[Record] = []
    in_flight: set[asyncio.Task[None]] = set()
    start = time.perf_counter()

    async def one(stream: Stream, raw: bytes, due: float) -> None:
        lag = time.perf_counter() - start - due
        why = ""
        try:
            code, body = await asyncio.wait_for(pool.request(raw), client_timeout)
            status, why = str(code), "" if code == 200 else reason(body)
        except asyncio.TimeoutError:
            status = TIMEOUT
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            status, why = FAILED, f"{type(exc).__name__}: {exc}"
        done = time.perf_counter() - start
        records.append(Record(stream.label, due, lag, status, (done - due) * 1000, done, why))

    async def arrivals(stream: Stream, rng: random.Random) -> None:
        requests = [raw_request(host, port, stream.path, body, stream.headers) for body in stream.bodies]
        for due, index in schedule(stream.rate, len(requests), seconds, rng, period):
            wait = due - (time.perf_counter() - start)
            if wait > 0:
                await asyncio.sleep(wait)
            if len(in_flight) >= max_in_flight:
                records.append(Record(stream.label, due, 0.0, DROPPED, 0.0, due))
            else:
                task = asyncio.create_task(one(stream, requests[index], due))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)

    rng = random.Random(seed)
    await asyncio.gather(*(arrivals(stream, random.Random(rng.random())) for stream in streams))
    if in_flight:
        await asyncio.wait(set(in_flight))  # each ends by its own client_timeout
    pool.close()
    return {"records": records, "seconds": seconds, "connections_opened": pool.opened}
