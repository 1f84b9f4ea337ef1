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
import itertools
import json
import statistics
import subprocess
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

#: The names that stand for the in-process references in --servers.
IDEAL, REGISTRY = "ideal", "registry"
BENCH = Path(__file__).resolve().parent


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


def registry_run(model: str, source: Path, bodies: Path, args: argparse.Namespace) -> dict[str, Any]:
    """bench/registry_loop.py in a process of its own, on the config the harness serves the model
    with and the texts of ``bodies``."""
    config = harness.modeldeploy_config(model, source, args.work, f"registry-{model}", args)
    texts = len(bodies.read_text().splitlines())
    command = [harness.PYTHON, str(BENCH / "registry_loop.py"), "--config", str(config), "--model", model,
               "--concurrency", ",".join(map(str, args.concurrency)), "--seconds", str(args.seconds),
               "--warmup-seconds", str(args.warmup_seconds), "--texts", str(texts)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    print(REGISTRY, {c: round(r["items_per_s"], 1) for c, r in runs.items()}, flush=True)
    return runs


def run_order(servers: Sequence[str], rounds: int) -> list[str]:
    """Each server once per round, every other round in reverse: A B B A A B B A, A B C C B A ..."""
    return [name for r in range(rounds) for name in (servers if r % 2 == 0 else list(reversed(servers)))]


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
    servers = results["servers"]
    pairs = list(itertools.combinations(servers, 2))
    lines = [f"# {' against '.join(servers)}, interleaved ({results['model']})", "",
             f"Produced by `{results['command']}` ({results['date']}, commit {results['commit']}): "
             f"{results['machine']}. Each server alone, in the order {' '.join(results['order'])}; each run warmed "
             f"up {results['warmup_seconds']:g} s at 8 clients, then wrk (closed loop, the harness's review-like "
             f"texts) for {results['seconds']:g} s at each concurrency. Items/s: mean (min-max) over each server's "
             "runs; the ratio is of the means." + (
                 f" {IDEAL}: the in-process ideal window on the first {results['reference_items']} texts, "
                 "timed in its turn (best of two passes after one untimed)." if IDEAL in servers else "") + (
                 f" {REGISTRY}: modeldeploy's batching without its HTTP front (bench/registry_loop.py: the "
                 "server's registry on its config file, C threads calling it in a closed loop on wrk's texts)."
                 if REGISTRY in servers else ""),
             "",
             "| clients | " + " | ".join(servers) + " | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " | "
             + " | ".join(f"{name} p50 / p99 ms" for name in servers) + " |",
             "|---" * (1 + 2 * len(servers) + len(pairs)) + "|"]
    for c in results["concurrency"]:
        rates, latencies = {}, {}
        for name in servers:
            runs = [run[str(c)] for label, run in zip(results["order"], results["runs"]) if label == name]
            rates[name] = [r["items_per_s"] for r in runs]
            latencies[name] = _latency(runs)
        means = {name: statistics.mean(values) for name, values in rates.items()}
        lines.append(f"| {c} | " + " | ".join(f"{means[n]:.1f} ({min(rates[n]):.1f}-{max(rates[n]):.1f})"
                                             for n in servers)
                     + " | " + " | ".join(f"{means[a] / means[b]:.2f}" for a, b in pairs) + " | "
                     + " | ".join(latencies[n] for n in servers) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    own = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    own.add_argument("--servers", default="modeldeploy,litserve-wrapper",
                     help="two or more of the harness's servers: modeldeploy, modeldeploy-process, litserve-user, "
                          f"litserve-wrapper, baseline; or {IDEAL} (the in-process ideal window), {REGISTRY} "
                          "(modeldeploy's batching without the HTTP front)")
    own.add_argument("--rounds", type=int, default=4, help="runs of each server (4: A B B A A B B A)")
    own.add_argument("--model", default="sentiment")
    own.add_argument("--commit", default="working tree", help="the commit the servers ran, for the report")
    mine, rest = own.parse_known_args(argv)
    args = harness.parse_args([*rest, "--models", mine.model])
    servers = mine.servers.split(",")
    if len(servers) < 2 or len(set(servers)) < len(servers):
        raise SystemExit(f"--servers takes two or more different names, got {mine.servers!r}")
    args.process_engine = args.process_engine or "modeldeploy-process" in servers
    args.baseline = args.baseline or "baseline" in servers
    chosen = harness.configure_torch_threads(0)
    if args.peer_torch_threads is None:
        args.peer_torch_threads = chosen
    args.work.mkdir(parents=True, exist_ok=True)
    source = harness.sources(args)[mine.model]
    options = references.plugin_options(mine.model, source)
    bodies = reviews.write_bodies(args.work / f"interleaved-{mine.model}-bodies.jsonl", mine.model)
    order = run_order(servers, mine.rounds)
    window = IdealWindow(mine.model, source, args, options) if IDEAL in servers else None

    def run(name: str) -> dict[str, Any]:
        if name == IDEAL and window is not None:
            return window.run(args.concurrency)
        if name == REGISTRY:
            return registry_run(mine.model, source, bodies, args)
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
