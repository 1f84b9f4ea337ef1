"""Idle connections against two installs: does a new client still get a prompt answer?

For each install (``--before`` / ``--after`` folders made with ``pip install --no-deps --target``),
a server of the tiny sentiment model is started alone; this script opens N idle connections
(every fifth after one real request, kept alive; the rest never send a byte), then times 50
``/health/live`` and 50 ``/predict`` requests on fresh connections, each with a 5 s timeout. A request
that times out counts as a lock-out. Written to ``bench/results-connections.md`` and ``.json``.

    python bench/connections.py --models-dir bench/.work/tiny --before ../before-site --after ../after-site
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import platform
import resource
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from servers import PYTHON, Server, free_port  # noqa: E402

BENCH = Path(__file__).parent
PROBES = 50
PROBE_TIMEOUT = 5.0
BODY = json.dumps({"model_name": "sentiment", "data": "I love this film"})


def probe(port: int, method: str, path: str, body: str | None) -> float | None:
    """Seconds for one request on a fresh connection, or None if it timed out or failed."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        answer = connection.getresponse()
        answer.read()
        return time.perf_counter() - started if answer.status == 200 else None
    except OSError:
        return None
    finally:
        connection.close()


def hold_idle(port: int, count: int) -> list[socket.socket]:
    held = []
    request = (f"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(BODY)}\r\n\r\n{BODY}").encode()
    for index in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT)
        except OSError:
            break
        held.append(sock)
        if index % 5 == 0:
            try:
                sock.sendall(request)
                sock.recv(65536)
            except OSError:
                break  # not accepted: the server is locking clients out already
    return held


def measure(site: Path, source: Path, work: Path, idle: int, label: str) -> dict[str, Any]:
    port = free_port()
    config = work / f"connections-{label}.yaml"
    config.write_text(json.dumps({"models": {"sentiment": {"source": str(source)}}, "serve": ["sentiment"]}))
    command = [PYTHON, "-m", "modeldeploy", "serve", "--config", str(config), "--port", str(port)]
    server = Server(f"connections-{label}-{idle}", command, port, "/health/ready", work, {"PYTHONPATH": str(site)})
    server.start()
    try:
        server.wait_ready()
        held = hold_idle(port, idle)
        results = {}
        for name, method, path, body in (("live", "GET", "/health/live", None), ("predict", "POST", "/predict", BODY)):
            times: list[float | None] = []
            while len(times) < PROBES and times[-3:] != [None, None, None]:  # 3 timeouts in a row: locked out
                times.append(probe(port, method, path, body))
            answered = sorted(t for t in times if t is not None)
            results[name] = {
                "answered": len(answered), "timed_out": PROBES - len(answered),
                "p50_ms": round(statistics.median(answered) * 1000, 2) if answered else None,
                "p99_ms": round(answered[min(len(answered) - 1, int(len(answered) * 0.99))] * 1000, 2)
                if answered else None,
            }
        for sock in held:
            sock.close()
        return {"idle_asked": idle, "idle_held": len(held), **results}
    finally:
        server.stop()


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# Idle connections: is a new client still answered?",
        "",
        f"Produced by `python bench/connections.py` ({datetime.date.today()}): {platform.processor() or 'x86_64'}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores, Python {platform.python_version()}. Tiny sentiment "
        f"model; for each version a server alone, N idle connections held (1 in 5 after a real kept-alive request), "
        f"then {PROBES} `/health/live` and {PROBES} `/predict` requests on new connections, one at a time, "
        f"each with a {PROBE_TIMEOUT:g} s timeout (a timeout is a lock-out; after 3 in a row the rest are "
        "counted as not answered).",
        "",
        "| version | idle asked | idle held | live answered | live p50 ms | live p99 ms | predict answered | predict p50 ms "
        "| predict p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        live, predict = ({k: "-" if v is None else v for k, v in row[name].items()} for name in ("live", "predict"))
        lines.append(f"| {row['version']} | {row['idle_asked']} | {row['idle_held']} | {live['answered']}/{PROBES} | {live['p50_ms']} | "
                     f"{live['p99_ms']} | {predict['answered']}/{PROBES} | {predict['p50_ms']} | "
                     f"{predict['p99_ms']} |")
    markdown = args.out.with_suffix(".md")
    previous = markdown.read_text() if markdown.exists() else ""
    reading = previous[previous.index("\n## Reading"):] if "\n## Reading" in previous else ""  # kept: written by hand
    return "\n".join(lines) + "\n" + reading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--idle", default="0,1000,5000", help="idle connection counts")
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--out", type=Path, default=BENCH / "results-connections")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the saved .json")
    args = parser.parse_args()
    if args.report_only:
        args.out.with_suffix(".md").write_text(report(json.loads(args.out.with_suffix(".json").read_text()), args))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rows = []
    for idle in (int(n) for n in args.idle.split(",")):
        for version, site in (("before", args.before), ("after", args.after)):
            rows.append({"version": version, **measure(site, args.models_dir / "sentiment", args.work, idle, version)})
            print(json.dumps(rows[-1]), flush=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(report(rows, args))


if __name__ == "__main__":
    main()
