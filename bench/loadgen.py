"""Load generation: wrk for throughput and latency, a Retry-After-honouring client for overload."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

LUA = Path(__file__).with_name("post.lua")


def wrk(url: str, bodies: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    """One wrk run (closed loop: each connection sends its next request when answered)."""
    command = ["wrk", "-t", str(min(2, concurrency)), "-c", str(concurrency), "-d", f"{max(1, round(seconds))}s",
               "--timeout", "120s", "-s", str(LUA), url, "--", str(bodies)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    output = done.stdout
    line = next(line for line in output.splitlines() if line.startswith("WRK_JSON "))
    result = json.loads(line[len("WRK_JSON "):])
    result["ok"] = result["statuses"].get("200", 0)
    result["items_per_s"] = result["ok"] / result["seconds"]
    return result


def overload(host: str, port: int, bodies: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    """``concurrency`` clients for ``seconds``; a client told 503 waits its Retry-After, as clients should.

    Records every answer's status and latency (wrk cannot split latency by status). The clients
    are coroutines on one event loop: a thread per client would put 128 threads of the load
    generator in a GIL convoy on the same 2 cores and add their own scheduling delay to the
    latencies measured.
    """
    return asyncio.run(_overload(host, port, bodies.read_text().splitlines(), concurrency, seconds))


async def _overload(host: str, port: int, payloads: list[str], concurrency: int, seconds: float) -> dict[str, Any]:
    records: list[tuple[int, float]] = []
    failures: list[str] = []
    stop_at = time.monotonic() + seconds

    async def client(offset: int) -> None:
        index = offset
        while time.monotonic() < stop_at:
            index = (index + 1) % len(payloads)
            body = payloads[index].encode()
            # a fresh connection per request: a client sleeping out its Retry-After holds no
            # connection slot (waitress accepts 100 connections at a time by default)
            started = time.perf_counter()
            try:
                status, retry_after = await _post(host, port, body)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            records.append((status, (time.perf_counter() - started) * 1000))
            if status == 503:
                await asyncio.sleep(retry_after)

    await asyncio.gather(*(client(i * 7) for i in range(concurrency)))
    by_status: dict[str, list[float]] = {}
    for status, ms in records:
        by_status.setdefault(str(status), []).append(ms)
    return {
        "counts": {status: len(v) for status, v in sorted(by_status.items())},
        "failures": len(failures),
        "latency_ms": {status: _percentiles(v) for status, v in sorted(by_status.items())},
    }


async def _post(host: str, port: int, body: bytes) -> tuple[int, float]:
    """One ``POST /predict`` on its own connection; returns the status and Retry-After (seconds)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"POST /predict HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (host.encode(), port, len(body), body))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # the body, until the server closes
    finally:
        writer.close()
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.strip().lower(): value.strip() for name, value in
               (line.split(":", 1) for line in lines[1:] if ":" in line)}
    return status, float(headers.get("retry-after", "1"))


def _percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if len(values) < 2:
        return {"p50": values[0], "p99": values[0], "max": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p99": cuts[98], "max": values[-1]}
