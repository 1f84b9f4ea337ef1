"""A/B: how fast a retry storm's first refusals reach a client already connected, two installs.

A storm that opens at once (``--clients`` closed-loop connections retrying as soon as they are
refused, bench/loadgen.py's wrk) is met by the admission gate's pacing before the server knows
its connections. Beside each storm, ``--probes`` /predict probes (bench/probes.py: keep-alive
clients answered once before the storm, then sending 10 requests a second, so each waits 100 ms
after its answer) stand for the clients the pacer should tell at once. Their 503 latency is split
by when the probe was sent: in the storm's first second (its onset), or after. Each install serves
``--storms`` storms of ``--seconds`` per run, the machine settling between them; installs
alternate A B B A (``--rounds``), each server alone.

    python bench/storm_onset.py --before ../before-site --after ../after-site
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
import recording  # noqa: E402
import reviews  # noqa: E402
from ab import add_two_installs, run_order  # noqa: E402
from loadgen import _percentiles  # noqa: E402
from overload import BODIES, TARGETS, ensure_models, modeldeploy, probe_targets, settle  # noqa: E402
from probes import Probes, Target  # noqa: E402

BENCH = Path(__file__).resolve().parent
#: A probe sent this long into a storm, or sooner, counts as sent at its onset.
ONSET_SECONDS = 1.0


def measure(site: str, label: str, args: argparse.Namespace) -> dict[str, list[Any]]:
    """One server of the install in ``site``: goodput of each storm, and each probe's 503 as
    (seconds into the storm it was sent, latency ms)."""
    bodies = reviews.write_bodies(args.work / f"overload-{args.model}-bodies.jsonl", args.model, BODIES)
    predict = next(target for target in probe_targets(args.model) if target.label == "predict")
    targets = [Target(f"predict-{i}", predict.method, predict.path, predict.body) for i in range(args.probes)]
    server = modeldeploy([args.model], f"onset-{label}", args.work, site, {}).start()
    run: dict[str, list[Any]] = {"goodput": [], "refusals": []}
    try:
        server.wait_ready()
        loadgen.wrk(server.url, bodies, 32, 8)  # warm-up
        for _ in range(args.storms):
            assert server.process is not None
            settle(server.process.pid)
            with Probes("127.0.0.1", server.port, targets) as probes:
                started = time.monotonic()
                load = loadgen.wrk(server.url, bodies, args.clients, args.seconds)
            run["goodput"].append(load["items_per_s"])
            run["refusals"] += [(round(sent - started, 3), round(ms, 2)) for samples in probes.samples.values()
                                for status, ms, sent in samples if status == "503"]
    finally:
        server.stop()
    return run


def cut(latencies: list[float]) -> dict[str, float | int | None]:
    """Count, p50 / p99 / max (as every probe figure in bench/), and how many were slow."""
    if not latencies:
        return {"n": 0, "p50": None, "p99": None, "max": None, "slow": 0}
    return {"n": len(latencies), **_percentiles(latencies),
            "slow": sum(ms > TARGETS["refusal_p99_ms"] for ms in latencies)}


def summary(runs: list[dict[str, list[Any]]]) -> dict[str, Any]:
    refusals = [refusal for run in runs for refusal in run["refusals"]]
    return {"goodput": statistics.mean(g for run in runs for g in run["goodput"]),
            "onset": cut([ms for sent, ms in refusals if sent < ONSET_SECONDS]),
            "after": cut([ms for sent, ms in refusals if sent >= ONSET_SECONDS]),
            "all": cut([ms for _, ms in refusals])}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render(results: dict[str, Any]) -> str:
    order = " ".join("A" if version == "before" else "B" for version in run_order(results["rounds"]))
    limit = TARGETS["refusal_p99_ms"]
    lines = [f"# Storm onset: refusals to clients already connected, {results['label_before']} vs "
             f"{results['label_after']}", "",
             f"Produced by `{results['command']}` ({results['date']}): {results['machine']}. Model "
             f"{results['model']}; {results['storms']} storms of {results['clients']} closed-loop clients retrying at "
             f"once (wrk), {results['seconds']:g} s each, per server; beside each, {results['probes']} keep-alive "
             f"/predict probes sending 10 requests a second. Runs in the order {order} (A = before), each server "
             f"alone, the server idle before each storm. \"Onset\": probes sent in a storm's first "
             f"{ONSET_SECONDS:g} s. Slow: a 503 answered in over {limit:g} ms (the issue's p99 target).", "",
             "| install | storm goodput items/s | 503s at the onset | p50 / p99 / max ms | slow | 503s after | "
             "p50 / p99 / max ms | slow | all 503s: p99 ms |", "|---|---|---|---|---|---|---|---|---|"]
    for version in ("before", "after"):
        s = results["summary"][version]
        onset, after = s["onset"], s["after"]
        lines.append(f"| {results['label_' + version]} | {s['goodput']:.1f} | {onset['n']} | {_ms(onset['p50'])} / "
                     f"{_ms(onset['p99'])} / {_ms(onset['max'])} | {onset['slow']} | {after['n']} | "
                     f"{_ms(after['p50'])} / {_ms(after['p99'])} / {_ms(after['max'])} | {after['slow']} | "
                     f"{_ms(s['all']['p99'])} |")
    lines += ["", "Slow refusals (seconds into the storm the probe was sent: ms):", ""]
    for version in ("before", "after"):
        slow = sorted((sent, ms) for run in results["runs"][version] for sent, ms in run["refusals"] if ms > limit)
        listed = ", ".join(f"{sent:.2f}: {ms:.0f}" for sent, ms in slow) or "none"
        lines.append(f"- {results['label_' + version]}: {listed}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_two_installs(parser)
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--clients", type=int, default=512)
    parser.add_argument("--storms", type=int, default=10, help="storms per server")
    parser.add_argument("--seconds", type=float, default=6, help="length of each storm")
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--out", type=Path, default=BENCH / "results-storm-onset")
    args = parser.parse_args()
    ensure_models([args.model])
    runs: dict[str, list[dict[str, list[Any]]]] = {"before": [], "after": []}
    for index, version in enumerate(run_order(args.rounds)):
        runs[version].append(measure(str(getattr(args, version)), f"{version}-{index}", args))
        print(f"{version}: goodput {statistics.mean(runs[version][-1]['goodput']):.1f}/s", flush=True)
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "machine": recording.machine(), "model": args.model,
        "clients": args.clients, "storms": args.storms, "seconds": args.seconds, "probes": args.probes,
        "rounds": args.rounds, "label_before": args.label_before, "label_after": args.label_after,
        "command": f"python bench/storm_onset.py --model {args.model} --clients {args.clients} --storms {args.storms} "
                   f"--seconds {args.seconds:g} --probes {args.probes} --rounds {args.rounds}",
        "runs": runs, "summary": {version: summary(r) for version, r in runs.items()}}
    recording.save(args.out, results, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
