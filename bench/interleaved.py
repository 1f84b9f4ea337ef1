"""Two of the harness's servers in turn, A B B A ..., on one model: the harness measures each server
once, minutes apart, on a machine whose speed moves by 10-20 % within minutes; alternating them
puts that drift on both sides, so their ratio is the servers' and not the machine's.

Each run starts its server alone (as the harness does), warms it up at 8 clients, drives it with
wrk at each concurrency and stops it. Every other option is the harness's (its servers, their
settings, --device, --seconds, ...).

    python bench/interleaved.py --models-dir bench/.work/models --servers modeldeploy,litserve-wrapper \\
        --concurrency 4,32 --rounds 4 --out bench/results-interleaved
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import loadgen  # noqa: E402
import recording  # noqa: E402
import references  # noqa: E402
import reviews  # noqa: E402


def one_run(name: str, model: str, source: Path, bodies: Path, args: argparse.Namespace,
            options: dict[str, Any]) -> dict[str, Any]:
    """Start ``name`` alone, warm it up, one wrk run per concurrency, stop it."""
    server = harness.servers(model, source, args, options)[name].start()
    try:
        server.wait_ready()
        loadgen.wrk(server.url, bodies, 8, args.warmup_seconds)  # warm-up, not recorded
        runs = {str(c): loadgen.wrk(server.url, bodies, c, args.seconds) for c in args.concurrency}
    finally:
        server.stop()
    print(name, {c: round(r["items_per_s"], 1) for c, r in runs.items()}, flush=True)
    return runs


def render(results: dict[str, Any]) -> str:
    first, second = results["servers"]
    lines = [f"# {first} against {second}, interleaved ({results['model']})", "",
             f"Produced by `{results['command']}` ({results['date']}, commit {results['commit']}): "
             f"{results['machine']}. Each server alone, in the order {' '.join(results['order'])}; each run warmed "
             f"up {results['warmup_seconds']:g} s at 8 clients, then wrk (closed loop, the harness's review-like "
             f"texts) for {results['seconds']:g} s at each concurrency. Items/s: mean (min-max) over each server's "
             "runs; the ratio is of the means.", "",
             f"| clients | {first} | {second} | ratio | {first} p50 / p99 ms | {second} p50 / p99 ms |",
             "|---|---|---|---|---|---|"]
    for c in results["concurrency"]:
        cells = []
        for name in results["servers"]:
            runs = [run[str(c)] for label, run in zip(results["order"], results["runs"]) if label == name]
            rates = [r["items_per_s"] for r in runs]
            cells.append((statistics.mean(rates), min(rates), max(rates),
                          statistics.mean(r["p50_ms"] for r in runs), statistics.mean(r["p99_ms"] for r in runs)))
        (a, a_lo, a_hi, a50, a99), (b, b_lo, b_hi, b50, b99) = cells
        lines.append(f"| {c} | {a:.1f} ({a_lo:.1f}-{a_hi:.1f}) | {b:.1f} ({b_lo:.1f}-{b_hi:.1f}) | {a / b:.2f} | "
                     f"{a50:.0f} / {a99:.0f} | {b50:.0f} / {b99:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    own = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    own.add_argument("--servers", default="modeldeploy,litserve-wrapper",
                     help="two of the harness's servers: modeldeploy, modeldeploy-process, litserve-user, "
                          "litserve-wrapper, baseline")
    own.add_argument("--rounds", type=int, default=4, help="runs of each server (4: A B B A A B B A)")
    own.add_argument("--model", default="sentiment")
    own.add_argument("--commit", default="working tree", help="the commit the servers ran, for the report")
    mine, rest = own.parse_known_args(argv)
    args = harness.parse_args([*rest, "--models", mine.model])
    servers = mine.servers.split(",")
    if len(servers) != 2:
        raise SystemExit(f"--servers takes two names, got {mine.servers!r}")
    args.process_engine = args.process_engine or "modeldeploy-process" in servers
    args.baseline = args.baseline or "baseline" in servers
    chosen = harness.configure_torch_threads(0)
    if args.peer_torch_threads is None:
        args.peer_torch_threads = chosen
    args.work.mkdir(parents=True, exist_ok=True)
    source = harness.sources(args)[mine.model]
    options = references.plugin_options(mine.model, source)
    bodies = reviews.write_bodies(args.work / f"interleaved-{mine.model}-bodies.jsonl", mine.model)
    order = [servers[(r % 2) ^ (r // 2 % 2)] for r in range(2 * mine.rounds)]  # A B B A A B B A ...
    results = {"date": datetime.date.today().isoformat(), "machine": recording.machine(args.device),
               "command": harness.recorded_command(sys.argv[1:] if argv is None else argv,
                                                   ("python", "bench/interleaved.py")),
               "commit": mine.commit, "model": mine.model, "servers": servers, "order": order,
               "concurrency": args.concurrency, "seconds": args.seconds, "warmup_seconds": args.warmup_seconds,
               "runs": [one_run(name, mine.model, source, bodies, args, options) for name in order]}
    recording.save(args.out, results, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
