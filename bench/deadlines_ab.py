"""A/B of admission by deadline: open-loop Poisson arrivals beyond capacity against two installs.

Each request carries ``X-Request-Timeout: 2``; the server should refuse at once (503) what it
cannot answer within that, and answer in time everything it accepts. This runs bench/overload.py's
Poisson phase (same generator, bodies, batch settings and summary) at ``--load`` times each
model's peak (``--rates``, measured by bench/overload.py), alternating the installs A B B A ...
so the shared machine's drift falls on both; each server alone.

    python bench/deadlines_ab.py --before ../before-site --after ../after-site \\
        --rates sentiment=108,ner=14,summarization=35
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import recording  # noqa: E402
import reviews  # noqa: E402
from ab import add_two_installs, run_order  # noqa: E402
from overload import BODIES, DEADLINE_S, Phases, ensure_models, modeldeploy, parse_rates, poisson  # noqa: E402

BENCH = Path(__file__).resolve().parent


def measure(model: str, rate: float, args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    bodies = reviews.write_bodies(args.work / f"overload-{model}-bodies.jsonl", model, BODIES)
    phases = Phases(poisson=args.seconds)
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for run, version in enumerate(run_order(args.rounds)):
        site = str(getattr(args, version))
        server = modeldeploy([model], f"deadlines-{version}-{model}-{run}", args.work, site, {}).start()
        try:
            server.wait_ready()
            result = poisson(server, model, bodies, args.load * rate, phases)
        finally:
            server.stop()
        runs[version].append(result)
        print(f"{model} {version}: accepted {result['accepted']}, in time {result['accepted_in_time_share']:.1%}, "
              f"goodput {result['goodput']:.1f}/s, {result['counts']}", flush=True)
    return runs


def summary(results: list[dict[str, Any]]) -> dict[str, float]:
    accepted = sum(r["accepted"] for r in results)
    in_time = sum(r["accepted"] * (r["accepted_in_time_share"] or 0) for r in results)
    return {"accepted": accepted, "in_time_share": in_time / accepted if accepted else float("nan"),
            "goodput": statistics.mean(r["goodput"] for r in results),
            "goodput_in_time": statistics.mean(r["goodput_in_time"] for r in results),
            "refused": sum(r["counts"].get("503", 0) for r in results),
            "late": sum(r["counts"].get("504", 0) for r in results)}


def render(results: dict[str, Any]) -> str:
    lines = [f"# A/B: admission by deadline, {results['label_before']} vs {results['label_after']}", "",
             f"Produced by `{results['command']}` ({results['date']}): {results['machine']}. Open-loop Poisson "
             f"arrivals (bench/openloop.py) at {results['load']:g} x each model's peak goodput, "
             f"{results['seconds']:g} s per run, every request with `X-Request-Timeout: {DEADLINE_S:g}`; "
             "review-like texts (bench/reviews.py); batch settings as bench/overload.py's. Runs in the order "
             f"{' '.join('A' if v == 'before' else 'B' for v in run_order(results['rounds']))} (A = before), each "
             "server alone; figures summed (counts) or averaged (rates) over the runs of each install.", "",
             "| model | offered /s | install | accepted | accepted answered 200 in time | 504 | 503 | goodput /s "
             "| goodput in time /s |", "|---|---|---|---|---|---|---|---|---|"]
    for model, entry in results["models"].items():
        for version in ("before", "after"):
            s = entry["summary"][version]
            lines.append(f"| {model} | {entry['offered']:.1f} | {results['label_' + version]} | {s['accepted']} | "
                         f"{s['in_time_share']:.1%} | {s['late']} | {s['refused']} | {s['goodput']:.1f} | "
                         f"{s['goodput_in_time']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_two_installs(parser)
    parser.add_argument("--rates", type=parse_rates, required=True, help="peak goodput per model, sentiment=X,...")
    parser.add_argument("--load", type=float, default=2.0, help="offered load as a multiple of the peak")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--out", type=Path, default=BENCH / "results-ab-deadlines")
    args = parser.parse_args()
    ensure_models(list(args.rates))
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "machine": recording.machine(), "load": args.load,
        "seconds": args.seconds, "rounds": args.rounds,
        "label_before": args.label_before, "label_after": args.label_after,
        "command": f"python bench/deadlines_ab.py --rates {','.join(f'{m}={r:g}' for m, r in args.rates.items())} "
                   f"--load {args.load:g} --seconds {args.seconds:g} --rounds {args.rounds}", "models": {}}
    for model, rate in args.rates.items():
        runs = measure(model, rate, args)
        results["models"][model] = {"offered": args.load * rate, "runs": runs,
                                    "summary": {v: summary(r) for v, r in runs.items()}}
    recording.save(args.out, results, render)
    print(json.dumps({m: e["summary"] for m, e in results["models"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
