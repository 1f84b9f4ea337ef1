"""Load generation: wrk for throughput and latency, a Retry-After-honouring client for overload."""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import threading
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

    Records every answer's status and latency (wrk cannot split latency by status).
    """
    payloads = bodies.read_text().splitlines()
    records: list[tuple[int, float]] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(offset: int) -> None:
        index = offset
        while time.monotonic() < stop_at:
            index = (index + 1) % len(payloads)
            # a fresh connection per request: a client sleeping out its Retry-After holds no
            # connection slot (waitress accepts 100 connections at a time by default)
            connection = http.client.HTTPConnection(host, port, timeout=120)
            started = time.perf_counter()
            try:
                connection.request("POST", "/predict", payloads[index],
                                   {"Content-Type": "application/json", "Connection": "close"})
                response = connection.getresponse()
                response.read()
            except OSError as exc:
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")
                continue
            finally:
                connection.close()
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                records.append((response.status, elapsed))
            if response.status == 503:
                time.sleep(float(response.getheader("Retry-After", "1")))

    threads = [threading.Thread(target=client, args=(i * 7,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    by_status: dict[str, list[float]] = {}
    for status, ms in records:
        by_status.setdefault(str(status), []).append(ms)
    return {
        "counts": {status: len(v) for status, v in sorted(by_status.items())},
        "failures": len(failures),
        "latency_ms": {status: _percentiles(v) for status, v in sorted(by_status.items())},
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if len(values) < 2:
        return {"p50": values[0], "p99": values[0], "max": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p99": cuts[98], "max": values[-1]}
