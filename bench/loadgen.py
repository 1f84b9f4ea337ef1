"""Load generation: wrk for throughput and latency; percentiles of recorded latencies."""

from __future__ import annotations

import json
import statistics
import subprocess
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


def _percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if len(values) < 2:
        return {"p50": values[0], "p99": values[0], "max": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p99": cuts[98], "max": values[-1]}
