"""Two of the harness's servers in turn, A B B A ..., on one model: the harness measures each server
once, minutes apart, on a machine whose speed moves by 10-20 % within minutes; alternating them
puts that drift on both sides, so their ratio is the servers' and not the machine's.

Each run starts its server alone (as the harness does), warms it up at 8 clients, drives it with
wrk at each concurrency and stops it. Every other option is the harness's (its servers, their
settings, --device, --seconds, ...). ``ideal`` may stand for one of the two: the in-process ideal
window (bench/references.py: each window of C of the first ``--reference-items`` texts sorted by
length, split into the cheapest sub-batches, priced by a cost fitted once at the start), timed in
its turn, so a server's ratio to it is paired too.

    python bench/interleaved.py --models-dir bench/.work/models --servers modeldeploy,litserve-wrapper \\
        --concurrency 4,32 --rounds 4 --out bench/results-interleaved
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import loadgen  # noqa: E402
import recording  # noqa: E402
import references  # noqa: E402
import reviews  # noqa: E402
from plain import PlainModel  # noqa: E402

#: The name that stands for the in-process ideal window in --servers.
IDEAL = "ideal"


class IdealWindow:
    """The in-process ideal window of a model, timed in its turn like a server's run."""

    def __init__(self, model: str, source: Path, args: argparse.Namespace, options: dict[str, Any]) -> None:
        self.plain = PlainModel.load(model, source, args.device, **options)
        self.texts = reviews.reviews(args.reference_items)
        self.lengths = self.plain.token_lengths(self.texts)
        self.cost = references.calibrate(self.plain, " ".join(self.texts))[0]

    def run(self, concurrency: Sequence[int]) -> dict[str, Any]:
        runs = {}
        for c in concurrency:
            items_per_s, sub_batches = references.ideal_window(self.plain, self.texts, self.lengths, c, self.cost)
            runs[str(c)] = {"items_per_s": items_per_s, "sub_batches": sub_batches, "p50_ms": None, "p99_ms": None}
        print(IDEAL, {c: round(r["items_per_s"], 1) for c, r in runs.items()}, flush=True)
        return runs


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


def _latency(runs: list[dict[str, Any]]) -> str:
    """Mean p50 / p99 of a server's runs; none for the ideal window (it times batches, not requests)."""
    if runs[0]["p50_ms"] is None:
        return "-"
    return f"{statistics.mean(r['p50_ms'] for r in runs):.0f} / {statistics.mean(r['p99_ms'] for r in runs):.0f}"


def render(results: dict[str, Any]) -> str:
    first, second = results["servers"]
    lines = [f"# {first} against {second}, interleaved ({results['model']})", "",
             f"Produced by `{results['command']}` ({results['date']}, commit {results['commit']}): "
             f"{results['machine']}. Each server alone, in the order {' '.join(results['order'])}; each run warmed "
             f"up {results['warmup_seconds']:g} s at 8 clients, then wrk (closed loop, the harness's review-like "
             f"texts) for {results['seconds']:g} s at each concurrency. Items/s: mean (min-max) over each server's "
             "runs; the ratio is of the means." + (
                 f" {IDEAL}: the in-process ideal window on the first {results['reference_items']} texts, "
                 "timed in its turn (best of two passes after one untimed)." if IDEAL in results["servers"] else ""),
             "",
             f"| clients | {first} | {second} | ratio | {first} p50 / p99 ms | {second} p50 / p99 ms |",
             "|---|---|---|---|---|---|"]
    for c in results["concurrency"]:
        cells = []
        for name in results["servers"]:
            runs = [run[str(c)] for label, run in zip(results["order"], results["runs"]) if label == name]
            rates = [r["items_per_s"] for r in runs]
            cells.append((statistics.mean(rates), min(rates), max(rates),
                          _latency(runs)))
        (a, a_lo, a_hi, a_latency), (b, b_lo, b_hi, b_latency) = cells
        lines.append(f"| {c} | {a:.1f} ({a_lo:.1f}-{a_hi:.1f}) | {b:.1f} ({b_lo:.1f}-{b_hi:.1f}) | {a / b:.2f} | "
                     f"{a_latency} | {b_latency} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    own = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    own.add_argument("--servers", default="modeldeploy,litserve-wrapper",
                     help="two of the harness's servers: modeldeploy, modeldeploy-process, litserve-user, "
                          f"litserve-wrapper, baseline; or {IDEAL} (the in-process ideal window)")
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
    window = IdealWindow(mine.model, source, args, options) if IDEAL in servers else None

    def run(name: str) -> dict[str, Any]:
        if name == IDEAL and window is not None:
            return window.run(args.concurrency)
        return one_run(name, mine.model, source, bodies, args, options)

    results = {"date": datetime.date.today().isoformat(), "machine": recording.machine(args.device),
               "command": harness.recorded_command(sys.argv[1:] if argv is None else argv,
                                                   ("python", "bench/interleaved.py")),
               "commit": mine.commit, "model": mine.model, "servers": servers, "order": order,
               "reference_items": args.reference_items,
               "concurrency": args.concurrency, "seconds": args.seconds, "warmup_seconds": args.warmup_seconds,
               "runs": [run(name) for name in order]}
    recording.save(args.out, results, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
