"""What one refusal costs the server, alone: CPU per 503 and its latency, with nothing else running.

The storms of bench/overload.py mix refusals with a model computing, so their CPU per refusal is
an estimate by subtraction. Here the model is the ``wordcount`` test plugin held by a ``sleep:``
text (a thread asleep, no CPU) with a queue of one, already full: every request wrk sends is
refused, and the server's CPU time over the run divided by the refusals is what a refusal costs.
Each install given (``--site LABEL=PYTHONPATH``, e.g. the code before the admission gate and
after it) is measured alone, with ``--connections`` clients retrying at once, refusals never held
(``max_refusals_per_second: 0`` where the install knows the key).

    python bench/refusal_cost.py --site before=DIR --site after=DIR
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
import recording  # noqa: E402
from overload import cpu_seconds  # noqa: E402
from servers import PYTHON, Server, free_port  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
WORDCOUNT = ROOT / "tests" / "fixtures" / "plugins" / "wordcount"


def install_wordcount(target: Path) -> Path:
    """The test plugin, pip-installed into its own folder (put on the server's PYTHONPATH)."""
    if not (target / "modeldeploy_wordcount").is_dir():
        subprocess.run([PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(WORDCOUNT)], check=True)
    return target


def post(url: str, text: str) -> None:
    body = json.dumps({"model_name": "wordcount", "data": text}).encode()
    try:
        urllib.request.urlopen(urllib.request.Request(url + "/predict", body), timeout=300).read()
    except OSError:
        pass  # the holding requests end when the server stops


def measure(label: str, site: str, plugins: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    server_settings = {"max_refusals_per_second": 0} if label != "before" else {}
    config = WORK / f"refusal-cost-{label}.yaml"
    config.write_text(json.dumps({"serve": ["wordcount"], "server": server_settings,
                                  "models": {"wordcount": {"batch": {"max_queue": 1, "timeout": 300}}}}))
    server = Server(f"refusal-cost-{label}", [PYTHON, "-m", "modeldeploy", "serve", "--config", str(config),
                                              "--port", str(port)],
                    port, "/health/ready", WORK, {"PYTHONPATH": f"{site}:{plugins}"}).start()
    try:
        server.wait_ready()
        assert server.process is not None
        for text in ("sleep:200 holds the model", "fills the queue"):
            threading.Thread(target=post, args=(server.url, text), daemon=True).start()
            time.sleep(1.0)
        bodies = WORK / "refusal-cost-bodies.jsonl"
        bodies.write_text(json.dumps({"model_name": "wordcount", "data": "refused at once"}) + "\n")
        loadgen.wrk(server.url, bodies, args.connections, 3)  # warm-up
        before = cpu_seconds(server.process.pid)
        run = loadgen.wrk(server.url, bodies, args.connections, args.seconds)
        cpu = cpu_seconds(server.process.pid) - before
        refusals = run["statuses"].get("503", 0)
        return {"refusals": refusals, "statuses": run["statuses"], "per_s": refusals / run["seconds"],
                "cpu_s": cpu, "cpu_us_per_refusal": 1e6 * cpu / refusals if refusals else None,
                "p50_ms": run["p50_ms"], "p99_ms": run["p99_ms"]}
    finally:
        server.stop()


def render(results: dict[str, Any]) -> str:
    lines = ["# What one refusal costs", "",
             f"Produced by `python bench/refusal_cost.py` ({results['date']}, commit {results['commit']}): "
             f"{results['machine']}. The `wordcount` test model is held asleep with its queue (one item) "
             f"full, so every request is refused; wrk, {results['connections']} connections retrying at once, "
             f"{results['seconds']:g} s per install, each alone; refusals never held. CPU: the server process's "
             "utime + stime over the run.", "",
             "| install | refusals/s | server CPU per refusal (µs) | 503 latency p50 / p99 (ms) | statuses |",
             "|---|---|---|---|---|"]
    for label, run in results["runs"].items():
        cost = f"{run['cpu_us_per_refusal']:.0f}" if run["cpu_us_per_refusal"] else "-"
        lines.append(f"| {label} | {run['per_s']:.0f} | {cost} | {run['p50_ms']:.2f} / {run['p99_ms']:.2f} | "
                     f"{run['statuses']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", action="append", required=True, metavar="LABEL=PYTHONPATH",
                        help="an install of modeldeploy to measure ('before' is run without the new keys)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--commits", default="", help="the commits the installs were made from, for the report")
    parser.add_argument("--out", type=Path, default=BENCH / "results-refusal-cost", help="results path without suffix")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    plugins = install_wordcount(WORK / "wordcount-plugin")
    runs = {}
    for item in args.site:
        label, _, site = item.partition("=")
        runs[label] = measure(label, site, plugins, args)
        print(label, runs[label], flush=True)
    results = {"date": datetime.date.today().isoformat(), "machine": recording.machine(),
               "commit": args.commits or "working tree", "connections": args.connections,
               "seconds": args.seconds, "runs": runs}
    recording.save(args.out, results, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
