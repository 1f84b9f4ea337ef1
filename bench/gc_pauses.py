"""Garbage-collection pauses in a retry storm: how long Python's collector holds a server still.

A full collection walks every object the collector tracks with the GIL held, and a server with a
model loaded holds hundreds of thousands that never die; while it runs, nothing else in the process
moves (see core/collector.py). This runs the MiniLM classifier's server (``modeldeploy serve``, the
overload harness's batch settings) from each frozen install given, with a ``sitecustomize`` beside
the install that logs every collection of 5 ms or more (``gc.callbacks``: generation, start,
length), and during a storm of ``--clients`` connections retrying at once (wrk) probes
``/health/live`` 100 ms after each answer (bench/probes.py), recording when each probe was sent. Reported per run:
the storm's goodput, the collections that fell inside it (the longest, and their sum), and the
probe's latency, with the probe answers over 100 ms and whether a logged collection had started
within 250 ms before each.

Installs run in turn A B B A (``--rounds``), each server started and stopped here.

    python bench/gc_pauses.py --site before=SITE_A --site after=SITE_B --commit C --out bench/results-gc-pauses
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
import overload  # noqa: E402
import recording  # noqa: E402
import reviews  # noqa: E402
from probes import Probes, Target  # noqa: E402

#: Logged by the server's sitecustomize for each collection of at least 5 ms.
PAUSE_LOGGER = '''import gc, sys, time
_started = []
def _log(phase, info):
    if phase == "start":
        _started[:] = [time.monotonic()]
    elif _started and time.monotonic() - _started[0] >= 0.005:
        print(f"GC_PAUSE {info['generation']} {_started[0]:.6f} {time.monotonic() - _started[0]:.6f}",
              file=sys.stderr, flush=True)
gc.callbacks.append(_log)
'''
SLOW_MS = 100.0
#: A probe answer this soon after a collection started is counted as behind it.
BEHIND_SECONDS = 0.25


def pauses(log: Path) -> list[tuple[int, float, float]]:
    """(generation, started, seconds) of each logged collection."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("GC_PAUSE "):
            _, generation, started, seconds = line.split()
            found.append((int(generation), float(started), float(seconds)))
    return found


def run(label: str, site: str, clients: int, seconds: float, work: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as logger_dir:
        Path(logger_dir, "sitecustomize.py").write_text(PAUSE_LOGGER)
        server = overload.modeldeploy(["sentiment"], f"gc-{label}", work, f"{logger_dir}:{site}", {})
        server.start()
        try:
            server.wait_ready()
            bodies = reviews.write_bodies(work / "gc-pauses-sentiment-bodies.jsonl", "sentiment", overload.BODIES)
            loadgen.wrk(server.url, bodies, 32, 5)  # warm-up
            with Probes("127.0.0.1", server.port, [Target("live", "GET", "/health/live")]) as probes:
                time.sleep(1)
                began = time.monotonic()
                load = loadgen.wrk(server.url, bodies, clients, seconds)
                ended = time.monotonic()
        finally:
            server.stop()
    inside = [(g, s, d) for g, s, d in pauses(server.log_path) if began <= s <= ended]
    during = [(sent, ms) for _, ms, sent in probes.samples["live"] if began <= sent <= ended]
    latencies = [ms for _, ms in during]
    slow = [(sent, ms) for sent, ms in during if ms > SLOW_MS]
    return {
        "label": label, "clients": clients, "goodput": load["items_per_s"], "statuses": load["statuses"],
        "collections": [{"generation": g, "at_s": s - began, "ms": d * 1000} for g, s, d in inside],
        "longest_ms": max((d * 1000 for _, _, d in inside), default=0.0),
        "paused_ms": sum(d * 1000 for _, _, d in inside),
        "probe": {"count": len(latencies), "p50": statistics.median(latencies),
                  "p99": loadgen._percentiles(latencies)["p99"], "max": max(latencies)},
        "slow_probes": [{"at_s": sent - began, "ms": ms,
                         "behind_collection": any(0 <= sent + ms / 1000 - s <= BEHIND_SECONDS + d
                                                  for _, s, d in inside)} for sent, ms in slow],
    }


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Garbage-collection pauses in a retry storm",
        "",
        f"Produced by `{results['command']}` ({results['date']}, commit {results['commit']}): {results['machine']}. "
        f"Server: `modeldeploy serve` of the MiniLM classifier (bench/.work/minilm), batch settings "
        f"{overload.BATCH}, each install a frozen one. Each run: wrk at 32 connections for 5 s (warm-up), then a "
        f"storm of {results['clients']} connections retrying at once for {results['seconds']:g} s, review-like texts; "
        f"beside it one client probing `GET /health/live` 100 ms after each answer. A `sitecustomize` beside the "
        "install logs every collection of 5 ms or more (`gc.callbacks`). Installs in turn, A B B A.",
        "",
        "| run | goodput (200/s) | collections >= 5 ms in the storm (generation: ms) | longest (ms) | "
        "probe p50 / p99 / max (ms) | probe answers > 100 ms (behind a collection) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        collections = ", ".join(f"{c['generation']}: {c['ms']:.1f}" for c in r["collections"]) or "none"
        behind = sum(s["behind_collection"] for s in r["slow_probes"])
        lines.append(f"| {r['label']} | {r['goodput']:.1f} | {collections} | {r['longest_ms']:.1f} | "
                     f"{r['probe']['p50']:.1f} / {r['probe']['p99']:.1f} / {r['probe']['max']:.1f} | "
                     f"{len(r['slow_probes'])} ({behind}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", action="append", required=True, metavar="LABEL=PATH",
                        help="a frozen install to serve from (give two for A B B A)")
    parser.add_argument("--clients", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2, help="turns through the installs, every other one reversed")
    parser.add_argument("--commit", default="unknown", help="the commit of the newest install, for the report")
    parser.add_argument("--out", type=Path, required=True, help="results path without suffix")
    args = parser.parse_args(argv)
    sites = [tuple(entry.split("=", 1)) for entry in args.site]
    order = [site for turn in range(args.rounds) for site in (sites if turn % 2 == 0 else sites[::-1])]
    overload.ensure_models(["sentiment"])
    work = overload.WORK
    runs = [run(label, site, args.clients, args.seconds, work) for label, site in order]
    command = ["python", "bench/gc_pauses.py", *(f"--site {label}=SITE_{label.upper()}" for label, _ in sites),
               f"--clients {args.clients} --seconds {args.seconds:g} --rounds {args.rounds} --commit {args.commit}",
               f"--out {args.out}"]
    results = {"command": " ".join(command),
               "date": datetime.date.today().isoformat(), "commit": args.commit, "machine": recording.machine(),
               "clients": args.clients, "seconds": args.seconds, "runs": runs}
    recording.save(args.out, results, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
