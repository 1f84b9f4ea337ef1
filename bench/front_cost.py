"""What the HTTP front costs per answer, apart from the model: the ceiling one front process sets.

On a fast accelerator the model's share of a request shrinks and the front's CPU (HTTP, Flask,
JSON, admission, the hop to a worker) is what is left. It is measured here with models that cost
nothing, so the figures are the front's, on each engine (``local``: the model's thread in the
front; ``process``: the model in a worker process, the front's own CPU read apart from it):

- **stream**: the ``wordcount`` test plugin (it splits the text) at as many answers a second as
  the machine gives: the front's cost when requests and answers stream;
- **rounds**: the same plugin, each text prefixed ``sleep:0.2``, so every round takes 0.2 s and
  answers its whole batch at once, as a batched model's rounds do;
- **classifier** (bench/.work/minilm, or ``--classifier``): the real all-MiniLM-L6-v2 classifier,
  for the front's cost beside a real model (on ``--device``).

Each server runs alone, started and stopped here, with the review-like texts of bench/reviews.py,
driven by wrk (closed loop) after a 3 s warm-up. CPU is utime + stime from /proc: the front is
the server's own process, the workers its descendants; context switches are the front's threads'
(voluntary and involuntary, from /proc).

    python bench/front_cost.py                       # ~3 minutes
    python bench/front_cost.py --concurrency 64 --seconds 5 --workloads stream
    python bench/front_cost.py --workloads stream --engines process --fronts 1,2   # server.fronts
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
import recording  # noqa: E402
import reviews  # noqa: E402
from harness import recorded_command  # noqa: E402
from servers import PYTHON, Server, cpu_seconds, free_port  # noqa: E402

from modeldeploy.cli.fronts import FRONT_PROCESS_NAME  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
WORDCOUNT = ROOT / "tests" / "fixtures" / "plugins" / "wordcount"
CLASSIFIER = WORK / "minilm"
ENGINES = ("local", "process")
WORKLOADS = {
    "stream": "wordcount, answered at once",
    "rounds": "wordcount, every round 0.2 s (`sleep:0.2` texts), its batch answered at once",
    "classifier": "the MiniLM classifier",
}
ROUND_SLEEP = "sleep:0.2 "


def plugin_site(work: Path) -> Path:
    """A folder where the wordcount test plugin is pip-installed (once), for the servers' PYTHONPATH."""
    site = work / "front-cost-site"
    if not (site / "modeldeploy_wordcount").is_dir():
        subprocess.run([PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", str(site), str(WORDCOUNT)], check=True)
    return site


def bodies(workload: str, work: Path) -> Path:
    """The wrk bodies of ``workload``: the same review texts, to its model."""
    model = "sentiment" if workload == "classifier" else "wordcount"
    prefix = ROUND_SLEEP if workload == "rounds" else ""
    path = work / f"front-cost-{workload}-bodies.jsonl"
    path.write_text("".join(json.dumps({"model_name": model, "data": prefix + text}) + "\n"
                            for text in reviews.reviews(512)))
    return path


def server(workload: str, engine: str, site: Path, args: argparse.Namespace, fronts: int = 1) -> Server:
    """``modeldeploy serve`` of ``workload``'s model on ``engine`` with ``fronts`` front processes, not started."""
    model = "sentiment" if workload == "classifier" else "wordcount"
    document: dict[str, Any] = {"serve": [model], "server": {"engine": engine,
                                                            **({"fronts": fronts} if fronts > 1 else {})}}
    if workload == "classifier":
        document["models"] = {model: {"source": str(args.classifier), "device": args.device}}
    config = args.work / f"front-cost-{workload}-{engine}-{fronts}.yaml"
    config.write_text(json.dumps(document))  # JSON is YAML
    port = free_port()
    path = os.pathsep.join(filter(None, [args.server_pythonpath, str(site), os.environ.get("PYTHONPATH")]))
    return Server(f"front-cost-{workload}-{engine}-{fronts}", [PYTHON, "-m", "modeldeploy", "--log-level", "WARNING",
                                                      "serve", "--config", str(config), "--port", str(port)],
                  port, "/health/ready", args.work, {"PYTHONPATH": path})


def context_switches(pid: int) -> int:
    """Voluntary and involuntary context switches of every thread of ``pid`` so far."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            lines = status.read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.split(":")[0].endswith("ctxt_switches"))
    return total


def is_front(pid: int) -> bool:
    """Whether ``pid`` is one of the further front processes (``server.fronts``), by the name they take."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().startswith(FRONT_PROCESS_NAME)
    except OSError:
        return False


def measure(workload: str, engine: str, args: argparse.Namespace, site: Path, body_file: Path,
            fronts: int = 1) -> dict[str, Any]:
    """Answers/s, latency and CPU per answer (fronts, workers) at each concurrency, one server."""
    under_test = server(workload, engine, site, args, fronts).start()
    try:
        under_test.wait_ready()
        assert under_test.process is not None
        loadgen.wrk(under_test.url, body_file, 8, 3)  # warm-up (and every front started), not recorded
        front_pids = [under_test.process.pid, *filter(is_front, under_test.pids()[1:])]
        if len(front_pids) != fronts:
            raise RuntimeError(f"{len(front_pids)} front processes run, {fronts} were asked for")

        def fronts_cpu() -> float:
            return sum(cpu_seconds(Path(f"/proc/{pid}/stat")) for pid in front_pids)

        def workers_cpu() -> float:
            return sum(cpu_seconds(Path(f"/proc/{pid}/stat")) for pid in under_test.pids() if pid not in front_pids)

        def switched() -> int:
            return sum(context_switches(pid) for pid in front_pids)

        points = {}
        for concurrency in args.concurrency:
            front, workers = fronts_cpu(), workers_cpu()
            switches = switched()
            result = loadgen.wrk(under_test.url, body_file, concurrency, args.seconds)
            answers = max(1, result["ok"])
            front_ms = 1000 * (fronts_cpu() - front) / answers
            workers_ms = 1000 * (workers_cpu() - workers) / answers
            switches = (switched() - switches) / answers
            points[str(concurrency)] = {
                "answers_per_s": result["items_per_s"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
                "statuses": result["statuses"], "front_cpu_ms": front_ms, "workers_cpu_ms": workers_ms,
                "front_switches": switches, "fronts": fronts,
                "front_ceiling_per_s": fronts * 1000 / front_ms if front_ms > 0 else None}
            print(f"{workload} {engine_label(engine, fronts)} c={concurrency}: {result['items_per_s']:.0f}/s, "
                  f"fronts {front_ms:.3f} ms, workers {workers_ms:.3f} ms per answer", flush=True)
        return points
    finally:
        under_test.stop()


def engine_label(engine: str, fronts: int) -> str:
    return engine if fronts == 1 else f"{engine}, {fronts} fronts"


def report(results: dict[str, Any]) -> str:
    lines = [
        "# What the HTTP front costs per answer", "",
        f"Produced by `{results['command']}` ({results['date']}, commit {results['commit']}): "
        f"{results['machine']}. " + (f"Server: a frozen install of commit {results['server_commit']}. "
                                     if results.get("server_commit") else "")
        + f"wrk closed loop, {results['seconds']:g} s a point after a 3 s warm-up, review-like texts "
        "(bench/reviews.py); each server alone. Front CPU: the server's own process, with the further "
        "front processes of `server.fronts` (N fronts); workers: its other child processes (the process "
        "engine's model workers). 'Ceiling': N x 1000 / front ms, the answers a second the fronts could give "
        "if their CPU were all they needed (one GIL and one core each); n/a where the model computes in the "
        "front's process (the local engine's classifier).", "",
        "| workload | engine | clients | answers/s | p50 / p99 ms | front CPU ms/answer | workers CPU ms/answer "
        "| front context switches/answer | front ceiling /s |", "|---|---|---|---|---|---|---|---|---|"]
    for workload, engines in results["runs"].items():
        for engine, points in engines.items():
            for concurrency, p in points.items():
                ceiling = p["front_ceiling_per_s"]
                workers = f"{p['workers_cpu_ms']:.3f}" if engine.startswith("process") else "(none)"
                if workload == "classifier" and engine == "local":
                    ceiling = None  # the model's compute is the front process's too
                lines.append(f"| {WORKLOADS[workload]} | {engine} | {concurrency} | {p['answers_per_s']:.0f} | "
                             f"{p['p50_ms']:.1f} / {p['p99_ms']:.1f} | {p['front_cpu_ms']:.3f} | {workers} | "
                             f"{p['front_switches']:.1f} | {'n/a' if ceiling is None else f'{ceiling:.0f}'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", type=lambda text: text.split(","), default=list(WORKLOADS))
    parser.add_argument("--engines", type=lambda text: text.split(","), default=list(ENGINES))
    parser.add_argument("--concurrency", type=lambda text: [int(c) for c in text.split(",")], default=[1, 32, 64])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--fronts", type=lambda text: [int(n) for n in text.split(",")], default=[1],
                        help="front process counts to measure the process engine with (server.fronts), e.g. 1,2")
    parser.add_argument("--classifier", type=Path, default=CLASSIFIER, help="the classifier workload's model folder")
    parser.add_argument("--device", default="auto", help="the classifier's device (default: auto, CUDA if present)")
    parser.add_argument("--server-pythonpath", help="PYTHONPATH of the servers (a frozen install of the code)")
    parser.add_argument("--server-commit", help="the commit that frozen install was made from, for the report")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--out", type=Path, default=BENCH / "results-front-cost")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the saved .json")
    args = parser.parse_args(argv)
    if args.report_only:
        args.out.with_suffix(".md").write_text(report(json.loads(args.out.with_suffix(".json").read_text())))
        return 0
    unknown = set(args.workloads) - set(WORKLOADS) | set(args.engines) - set(ENGINES)
    if unknown:
        parser.error(f"unknown workload(s) or engine(s): {', '.join(sorted(unknown))}")
    if "classifier" in args.workloads and not args.classifier.is_dir():
        parser.error(f"the classifier workload needs {args.classifier} (python bench/minilm.py {args.classifier})")
    args.work.mkdir(parents=True, exist_ok=True)
    site = plugin_site(args.work)
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=ROOT, check=False).stdout.strip(),
        "command": recorded_command(sys.argv[1:] if argv is None else argv, ("python", "bench/front_cost.py")),
        "machine": recording.machine(args.device), "server_commit": args.server_commit, "seconds": args.seconds,
        "runs": {}}
    try:
        for workload in args.workloads:
            body_file = bodies(workload, args.work)
            results["runs"][workload] = {
                engine_label(engine, fronts): measure(workload, engine, args, site, body_file, fronts)
                for engine in args.engines for fronts in (args.fronts if engine == "process" else [1])}
    finally:
        for running in list(Server.running):
            running.stop()
    recording.save(args.out, results, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
