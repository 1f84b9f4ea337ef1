"""The ray engine against the local engine, and against Ray Serve and LitServe as users write them.

One sentiment classifier of base size (6 layers, 768 wide, built offline by
``modeldeploy.testing``) and the benchmark corpus, one text per request, ``wrk`` closed loop.
Each server runs alone: the local engine; the ray engine with 1 and with 2 replicas; Ray Serve
with ``@serve.batch`` around the plain model (bench/ray_serve_peer.py); LitServe batching the
same wrapper (bench/litserve_app.py). For the ray engine it also reads the CPU time that Serve's
HTTP proxy and the ingress replica spend per request, which bounds what one ingress can carry.

    python bench/ray_engine.py [--seconds 15] [--out bench/results-ray]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import corpus  # noqa: E402
import loadgen  # noqa: E402
import recording  # noqa: E402
from servers import PYTHON, Server, free_port  # noqa: E402

from modeldeploy.testing import build_sentiment  # noqa: E402

BENCH = Path(__file__).parent
#: Process titles of the ray engine's HTTP path: Serve's proxy and the replica running the app.
FRONT_ROLES = {b"ray::ProxyActor": "proxy", b"ray::ServeReplica:modeldeploy:modeldeploy-ingress": "ingress"}


def modeldeploy(label: str, source: Path, work: Path, engine: str, replicas: int = 1) -> Server:
    port = free_port()
    config = work / f"{label}.yaml"
    config.write_text(json.dumps({"serve": ["sentiment"], "server": {"engine": engine},
                                  "models": {"sentiment": {"source": str(source), "replicas": replicas}}}))
    return Server(label, [PYTHON, "-m", "modeldeploy", "serve", "--config", str(config), "--port", str(port)],
                  port, "/health/ready", work)


def servers(source: Path, work: Path) -> dict[str, Server]:
    ray_port, lit_port = free_port(), free_port()
    return {
        "local engine": modeldeploy("local", source, work, "local"),
        "ray engine, 1 replica": modeldeploy("ray-1", source, work, "ray", 1),
        "ray engine, 2 replicas": modeldeploy("ray-2", source, work, "ray", 2),
        "Ray Serve @serve.batch (plain model)": Server(
            "rayserve", [PYTHON, str(BENCH / "ray_serve_peer.py"), str(source), str(ray_port), "32", "0.01"],
            ray_port, "/health", work),
        "LitServe (same wrapper)": Server(
            "litserve", [PYTHON, str(BENCH / "litserve_app.py"), "sentiment", str(source), str(lit_port), "16", "0.01",
                         "cpu", "{}"],
            lit_port, "/health", work),
    }


def front_cpu_seconds() -> dict[int, tuple[str, float]]:
    """The role and CPU seconds used so far of each process of the ray engine's HTTP path, by PID
    (Ray renames a busy actor's process after the call it runs, so titles are matched by prefix)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0]
            role = next((role for prefix, role in FRONT_ROLES.items() if title.startswith(prefix)), None)
            if role is not None:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                used[int(entry.name)] = (role, (int(fields[11]) + int(fields[12])) / ticks)
        except (OSError, IndexError):
            continue
    return used


def front_cpu_ms(run: Callable[[], int]) -> dict[str, float] | None:
    """CPU ms per request of each front role while ``run()`` sends requests (it returns how many);
    None when there is no such front or its processes changed meanwhile."""
    before = front_cpu_seconds()
    requests = run()
    after = front_cpu_seconds()
    if not before or set(before) != set(after) or not requests:
        return None
    spent: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        spent[role] = spent.get(role, 0.0) + seconds - before[pid][1]
    return {role: 1000 * seconds / requests for role, seconds in spent.items()}


def health_requests(url: str, seconds: float) -> int:
    """Requests answered by ``GET /health/live`` at 8 clients: the front's cost with no model call."""
    done = subprocess.run(["wrk", "-t", "2", "-c", "8", "-d", f"{max(1, round(seconds))}s", f"{url}/health/live"],
                          capture_output=True, text=True, check=True)
    return int(next(line for line in done.stdout.splitlines() if "requests in" in line).split()[0])


def measure(server: Server, bodies: Path, args: argparse.Namespace) -> dict[str, Any]:
    server.start()
    try:
        server.wait_ready(timeout=300)
        loadgen.wrk(server.url, bodies, 8, args.warmup_seconds)
        result: dict[str, Any] = {"c1": loadgen.wrk(server.url, bodies, 1, args.seconds)}

        def c32() -> int:
            result["c32"] = loadgen.wrk(server.url, bodies, 32, args.seconds)
            return result["c32"]["requests"]

        result["front_cpu_ms_per_predict"] = front_cpu_ms(c32)
        if result["front_cpu_ms_per_predict"]:
            result["front_cpu_ms_per_health_check"] = front_cpu_ms(
                lambda: health_requests(server.url, args.seconds / 2))
        return result
    finally:
        server.stop()


def _front_total(result: dict[str, Any], key: str = "front_cpu_ms_per_predict") -> float | None:
    roles = result.get(key)
    return sum(roles.values()) if roles else None


def report(results: dict[str, Any]) -> str:
    rows, split = [], []
    for label, r in results["servers"].items():
        front = _front_total(r)
        rows.append(f"| {label} | {r['c1']['p50_ms']:.1f} | {r['c1']['p99_ms']:.1f} | {r['c32']['items_per_s']:.1f} "
                    f"| {r['c32']['p50_ms']:.0f} | {r['c32']['p99_ms']:.0f} "
                    f"| {r['c1']['requests'] + r['c32']['requests'] - r['c1']['ok'] - r['c32']['ok']} "
                    f"| {'' if front is None else f'{front:.2f}'} |")
        for kind, key in (("POST /predict", "front_cpu_ms_per_predict"),
                          ("GET /health/live", "front_cpu_ms_per_health_check")):
            roles = r.get(key)
            if roles:
                ingress = f"{roles['ingress']:.2f}" if "ingress" in roles else "(none)"
                split.append(f"| {label} | {kind} | {roles.get('proxy', 0):.2f} | {ingress} |")
    table, split_table = "\n".join(rows), "\n".join(split)
    servers = results["servers"]
    local, ray1 = servers.get("local engine"), servers.get("ray engine, 1 replica")
    peer = servers.get("Ray Serve @serve.batch (plain model)", {})
    model = ""
    if local and ray1 and _front_total(ray1):
        front = _front_total(ray1)
        per_node = local["c32"]["items_per_s"]
        carried = 1000 / front
        model = f"""
CPU per request of the HTTP path (ms; c=32 for `/predict`, 8 clients for `/health/live`):

| server | request | Serve's proxy | the ingress (our app) |
|---|---|---|---|
{split_table}

## What it shows

- **Overhead at c=1:** {ray1['c1']['p50_ms'] - local['c1']['p50_ms']:+.1f} ms p50 on the ray engine
  ({ray1['c1']['p50_ms']:.1f} vs {local['c1']['p50_ms']:.1f} ms). A request crosses Serve's proxy
  (HTTP, then an actor call to the ingress, whose ASGI receive is another call back to the proxy),
  the ingress (Flask, then a handle call to the model's replica) and the replica. Ray Serve as its
  users write it (proxy straight to the model's replica, one hop fewer) measures about the same
  c=1 latency ({peer.get('c1', {}).get('p50_ms', float('nan')):.1f} ms), so most of it is Serve's HTTP path.
- **Where the front's CPU goes:** `GET /health/live` calls no model, yet costs the ingress
  {(ray1.get('front_cpu_ms_per_health_check') or {}).get('ingress', float('nan')):.1f} ms: Serve's ASGI path into a replica (on this machine a
  whole JSON answer under waitress costs about 0.3 ms of CPU, as measured for the overload
  issue). `/predict` adds the handle call to the model's replica.
- **Throughput at c=32, one 2-core machine:** {ray1['c32']['items_per_s'] / local['c32']['items_per_s']:.2f} x
  the local engine with 1 replica. Serve's proxy and our ingress spend {front:.1f} ms of CPU per
  request, taken from the same 2 cores as the model. A second replica on the same 2 cores makes
  it worse ({servers.get('ray engine, 2 replicas', {}).get('c32', {}).get('items_per_s', float('nan')):.1f} items/s): two torch
  pools contend for the cores and each replica sees half the requests, so smaller batches.
  Replicas pay off across machines, not within one.
- **A model of N worker nodes** (head with no model replicas, one text per request): a replica
  alone on a node like this one does what the local engine does here, about {per_node:.0f} items/s;
  one ingress (proxy + app) costs {front:.1f} ms CPU per request, so each core it has carries about
  {carried:.0f} requests/s. Throughput(N) = min(N x {per_node:.0f}, {carried:.0f} x cores of the ingress x texts
  per request): with one text per request a 2-core head saturates at about {2 * carried / per_node:.1f} worker
  nodes; past that, send several texts per request (the replica batches them in one plan). The
  engine runs one ingress replica; more of them (each with its own app) is not configurable yet.
"""
    return f"""# The ray engine: local vs Ray Serve, and the peers

Produced by `python bench/ray_engine.py` ({results['date']}, commit {results['commit']}):
{results['machine']}. Model: the sentiment classifier of base size built offline by
`modeldeploy.testing` (6 layers, 768 wide); the benchmark corpus (5-60 words), one text per
request; `wrk` closed loop, {results['seconds']:g} s per point after a {results['warmup_seconds']:g} s
warm-up at 8 clients. Each server ran alone, started and stopped (process group) by the script.

| server | c=1 p50 ms | c=1 p99 ms | c=32 items/s | c=32 p50 ms | c=32 p99 ms | non-200 | proxy+ingress CPU ms/request |
|---|---|---|---|---|---|---|---|
{table}
{model}"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--warmup-seconds", type=float, default=5)
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--out", type=Path, default=BENCH / "results-ray")
    parser.add_argument("--only", help="comma-separated labels to run (default: all)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the saved .json")
    args = parser.parse_args()
    if args.report_only:
        args.out.with_suffix(".md").write_text(report(json.loads(args.out.with_suffix(".json").read_text())))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    source = build_sentiment(args.work / "sentiment-base", size="base")
    bodies = corpus.write_bodies(args.work / "sentiment-bodies.jsonl", "sentiment")
    chosen = servers(source, args.work)
    if args.only:
        chosen = {label: server for label, server in chosen.items() if label in args.only.split(",")}
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=BENCH).stdout.strip(),
        "machine": recording.machine(),
        "seconds": args.seconds, "warmup_seconds": args.warmup_seconds, "servers": {},
    }
    for label, server in chosen.items():
        print(f"== {label}", flush=True)
        results["servers"][label] = measure(server, bodies, args)
        print(json.dumps({k: v for k, v in results["servers"][label].items()}, default=str)[:400], flush=True)
    recording.save(args.out, results, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
