"""The benchmark, end to end, model by model: the in-process references (plain transformers:
batch-1, arrival-order windows, the ideal window), then modeldeploy, LitServe as its users write
it and LitServe serving our wrapper, each alone on the machine, under wrk at each concurrency of
the curve, LitServe as its users write it at other batch sizes, and where modeldeploy's CPU goes
(on the classifier). Writes results.json, results.md and curve.png next to this file (or under
--out).

    bash bench/run.sh            # the documented command (builds the models once)
    python bench/harness.py --models-dir DIR [--minilm DIR] [--smoke] [options]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))

import breakdown  # noqa: E402
import loadgen  # noqa: E402
import references  # noqa: E402
import report  # noqa: E402
import reviews  # noqa: E402
from minilm import RECORD  # noqa: E402
from plain import PlainModel, device_name, resolve_device  # noqa: E402
from servers import PYTHON, TORCH_THREADS_ENV, Server, free_port  # noqa: E402

from modeldeploy.batching import configure_torch_threads  # noqa: E402
from modeldeploy.config import BatchConfig  # noqa: E402

BENCH = Path(__file__).parent
#: Options naming places on this machine: left out of the command the results record.
PATH_OPTIONS = ("--models-dir", "--minilm", "--out", "--work", "--server-pythonpath", "--classifier")


def model_settings(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``MODEL.KEY=VALUE`` options -> ``{MODEL: {KEY: VALUE}}``, each value read as YAML (``32`` is a number)."""
    settings: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        model, _, key = name.partition(".")
        if not (model and key and _):
            raise SystemExit(f"--setting takes MODEL.KEY=VALUE, got {pair!r}")
        settings.setdefault(model, {})[key] = yaml.safe_load(value)
    return settings


#: The servers whose CPU is profiled (sentiment only), and where results.json keeps each profile.
PROFILED = {"modeldeploy": "breakdown", "modeldeploy-process": "breakdown_process"}


def modeldeploy_config(model: str, source: Path, work: Path, label: str, args: argparse.Namespace,
                       torch_threads: int = 0, engine: str = "local") -> Path:
    """The config file modeldeploy serves ``model`` with in the benchmark: its folder, the harness's
    batch settings and the model's ``--setting``s."""
    config = work / f"{label}.yaml"
    served: dict[str, Any] = {"source": str(source), "device": args.device,
                              "batch": {"max_batch_size": args.max_batch_size, "max_queue": args.max_queue,
                                        "regroup_wait": args.regroup_wait}}
    if args.settings.get(model):
        served["settings"] = args.settings[model]
    config.write_text(json.dumps({"serve": [model], "models": {model: served},  # JSON is YAML
                                  "server": {"torch_threads": torch_threads, "engine": engine}}))
    return config


def modeldeploy_server(model: str, source: Path, work: Path, label: str, args: argparse.Namespace,
                       torch_threads: int = 0, engine: str = "local") -> Server:
    """modeldeploy as users run it (``modeldeploy serve`` on a config naming the model's folder)."""
    port = free_port()
    config = modeldeploy_config(model, source, work, label, args, torch_threads, engine)
    command = [PYTHON, "-m", "modeldeploy", "serve", "--config", str(config), "--port", str(port)]
    return Server(label, command, port, "/health/ready", work)


def peer_env(args: argparse.Namespace) -> dict[str, str]:
    return {TORCH_THREADS_ENV: str(args.peer_torch_threads)} if args.peer_torch_threads else {}


def litserve_user(model: str, source: Path, args: argparse.Namespace, options: dict[str, Any], batch: int,
                  label: str) -> Server:
    """LitServe as its users write it, batching up to ``batch`` texts."""
    port = free_port()
    return Server(label, [PYTHON, str(BENCH / "litserve_user_app.py"), model, str(source), str(port), str(batch),
                          str(args.litserve_timeout), args.device, json.dumps(options)],
                  port, "/health", args.work, peer_env(args))


def servers(model: str, source: Path, args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Server]:
    """The servers of one model, not started: each is measured alone (an idle LitServe still polls
    its queues, about 10% of a core, which would slow whichever server shares the machine;
    results.json records under ``running_alongside`` what else ran during each measurement)."""
    wrapper_port, baseline_port = free_port(), free_port()
    chosen = {
        "modeldeploy": modeldeploy_server(model, source, args.work, f"modeldeploy-{model}", args),
        "litserve-user": litserve_user(model, source, args, options, args.litserve_batch, f"litserve-user-{model}"),
        "litserve-wrapper": Server(f"litserve-wrapper-{model}",
                                   [PYTHON, str(BENCH / "litserve_app.py"), model, str(source), str(wrapper_port),
                                    str(args.max_batch_size), str(args.litserve_timeout), args.device,
                                    json.dumps(args.settings.get(model, {}))], wrapper_port, "/health", args.work,
                                   peer_env(args)),
    }
    if args.process_engine:
        chosen["modeldeploy-process"] = modeldeploy_server(model, source, args.work, f"modeldeploy-process-{model}",
                                                           args, engine="process")
    if args.baseline:
        chosen["baseline"] = Server(f"baseline-{model}", [PYTHON, str(BENCH / "baseline_app.py"), model, str(source),
                                                          str(baseline_port), args.device], baseline_port, "/health",
                                    args.work, peer_env(args))
    return chosen


def litserve_sweep(model: str, source: Path, bodies: Path, args: argparse.Namespace,
                   options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """LitServe as its users write it at the comparison concurrency with other batch sizes, each
    server alone: how much of the gap to it is its configuration (with texts of very different
    lengths in arrival order, a smaller batch pads less)."""
    runs = {}
    for batch in args.litserve_sweep:
        server = litserve_user(model, source, args, options, batch, f"litserve-user-{model}-batch{batch}").start()
        try:
            server.wait_ready()
            loadgen.wrk(server.url, bodies, args.compare_at, args.warmup_seconds)
            runs[str(batch)] = run = loadgen.wrk(server.url, bodies, args.compare_at, args.seconds)
        finally:
            server.stop()
        print(f"{model} litserve-user max_batch_size={batch} c={args.compare_at}: {run['items_per_s']:.1f}/s",
              flush=True)
    return runs


def curve(server: Server, bodies: Path, args: argparse.Namespace, label: str) -> dict[str, dict[str, Any]]:
    """One wrk run per concurrency, with the server's CPU per answered request."""
    runs = {}
    for concurrency in args.concurrency:
        cpu = server.cpu_seconds()
        run = loadgen.wrk(server.url, bodies, concurrency, args.seconds)
        run["cpu_ms_per_request"] = (server.cpu_seconds() - cpu) / max(run["ok"], 1) * 1000
        runs[str(concurrency)] = run
        print(f"{label} c={concurrency}: {run['items_per_s']:.1f}/s p50 {run['p50_ms']:.0f} p99 {run['p99_ms']:.0f} ms "
              f"{run['statuses']} cpu {run['cpu_ms_per_request']:.1f} ms/request", flush=True)
    return runs


def measure_references(model: str, source: Path, args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    print(f"== {model}: in-process references", flush=True)
    plain = PlainModel.load(model, source, args.device, **options)
    texts = reviews.reviews(args.reference_items)
    result = references.measure(plain, texts, sorted({args.compare_at, *args.reference_windows}), args.concurrency)
    del plain
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    windows = ", ".join(f"C={c}: arrival {w['arrival_items_per_s']:.1f}/s, ideal {w['ideal_items_per_s']:.1f}/s"
                        for c, w in result["windows"].items())
    print(f"{model}: batch-1 {result['batch1']['items_per_s']:.1f}/s (p50 {result['batch1']['p50_ms']:.1f} ms); "
          f"{windows}", flush=True)
    return result


def bench_model(model: str, source: Path, args: argparse.Namespace) -> dict[str, Any]:
    options = references.plugin_options(model, source)
    result: dict[str, Any] = {"options": options,
                              "references": measure_references(model, source, args, options),
                              "runs": {}, "peak_memory_mb": {}, "running_alongside": {}}
    if (source / RECORD).exists():
        result["classifier_head"] = json.loads((source / RECORD).read_text())
    bodies = reviews.write_bodies(args.work / f"{model}-bodies.jsonl", model)
    for name, server in servers(model, source, args, options).items():  # one at a time, back to back
        server.start()
        try:
            server.wait_ready()
            result["running_alongside"][name] = sorted(s.label for s in Server.running if s is not server)
            loadgen.wrk(server.url, bodies, 8, args.warmup_seconds)  # warm-up, not recorded
            result["runs"][name] = curve(server, bodies, args, f"{model} {name}")
            if name in PROFILED and model == "sentiment" and args.breakdown:
                profiled = result[PROFILED[name]] = breakdown.measure(server, bodies, args.compare_at,
                                                                      args.breakdown_seconds, args.breakdown_rate)
                print(f"{model} {name} CPU ms/request: front {profiled['front_cpu_ms_per_request']:.2f} "
                      f"({profiled['front_cores']:.2f} cores), children {profiled['children_cpu_ms_per_request']:.2f}; "
                      + ", ".join(f"{bucket} {part['cpu_ms_per_request']:.2f}" for bucket, part in
                                  profiled["buckets"].items()), flush=True)
            result["peak_memory_mb"][name] = server.peak_memory_mb()
        finally:
            server.stop()
    if args.litserve_sweep:
        result["litserve_sweep"] = litserve_sweep(model, source, bodies, args, options)
    if args.threads_check:
        result["threads_check"] = threads_check(model, source, bodies, args)
    return result


def threads_check(model: str, source: Path, bodies: Path, args: argparse.Namespace) -> dict[str, dict[int, Any]]:
    """modeldeploy at the comparison concurrency with 1 torch thread and with one per core, on the
    quiet machine and with one core kept busy by another process (what ``server.torch_threads``
    advises on: intra-op threads wait for each other at every barrier, so a stolen core stalls all)."""
    runs: dict[str, dict[int, Any]] = {"quiet": {}, "one_core_busy": {}}
    for condition, by_threads in runs.items():
        for threads in sorted({1, len(os.sched_getaffinity(0))}):
            server = modeldeploy_server(model, source, args.work, f"modeldeploy-{model}-threads{threads}", args,
                                        threads).start()
            hog = None
            try:
                server.wait_ready()
                if condition == "one_core_busy":
                    hog = subprocess.Popen([PYTHON, "-c", "while True: pass"])
                loadgen.wrk(server.url, bodies, 8, args.warmup_seconds)
                by_threads[threads] = loadgen.wrk(server.url, bodies, args.compare_at, args.seconds)
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
                server.stop()
            print(f"{model} modeldeploy torch_threads={threads} {condition}: "
                  f"{by_threads[threads]['items_per_s']:.1f}/s", flush=True)
    return runs


def machine(args: argparse.Namespace) -> dict[str, Any]:
    memory_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return {"cpu": device_name("cpu"), "cores": len(os.sched_getaffinity(0)), "memory_gb": round(memory_gb, 1),
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "device": resolve_device(args.device), "device_name": device_name(args.device),
            "date": datetime.date.today().isoformat(), "load_average": os.getloadavg()}


def sources(args: argparse.Namespace) -> dict[str, Path]:
    """Each model's folder: the MiniLM classifier for sentiment (the tiny demo model with --smoke)."""
    chosen = {model: args.models_dir / model for model in args.models}
    if "sentiment" in chosen and not args.smoke:
        chosen["sentiment"] = args.minilm
    for model, folder in chosen.items():
        if not (folder / "config.json").exists():
            raise SystemExit(f"no {model} model in {folder}: `bash bench/run.sh` builds them")
    return chosen


def recorded_command(argv: list[str], program: tuple[str, ...] = ("bash", "bench/run.sh")) -> str:
    """How the run was started, without the options that name folders of this machine."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in PATH_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in PATH_OPTIONS)):
            kept.append(arg)
    return shlex.join([*program, *kept])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", type=Path, required=True,
                        help="output of `python -m modeldeploy.testing build`")
    parser.add_argument("--minilm", type=Path, default=BENCH / ".work" / "minilm",
                        help="the sentiment model: the MiniLM classifier of bench/minilm.py")
    parser.add_argument("--models", default="sentiment,ner,summarization")
    parser.add_argument("--out", type=Path, default=BENCH)
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--device", default="auto",
                        help="every server's and reference's device (auto: CUDA when present)")
    parser.add_argument("--setting", dest="settings", action="append", default=[], metavar="MODEL.KEY=VALUE",
                        help="a model setting for modeldeploy (and the wrapper LitServe serves), e.g. "
                             "sentiment.precision=bf16; repeatable")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    parser.add_argument("--compare-at", type=int, default=32, help="the concurrency the targets are judged at")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--warmup-seconds", type=float, default=3)
    parser.add_argument("--reference-items", type=int, default=256,
                        help="texts the in-process references run (the first of the bodies wrk sends)")
    parser.add_argument("--reference-windows", default="",
                        help="more window sizes C for the arrival-order and ideal references (the comparison's always)")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-queue", type=int, default=BatchConfig.max_queue)
    parser.add_argument("--regroup-wait", type=float, default=BatchConfig.regroup_wait,
                        help="modeldeploy's batch.regroup_wait (a fraction of the last round's duration)")
    parser.add_argument("--litserve-batch", type=int, default=16, help="max_batch_size of LitServe as its users write it (LitServe around our wrapper takes "
                             "--max-batch-size, as modeldeploy does, and plans each batch with our planner)")
    parser.add_argument("--litserve-timeout", type=float, default=0.01, help="batch_timeout of both LitServe servers")
    parser.add_argument("--litserve-sweep", default="1,4,8,32",
                        help="other max_batch_size values to try LitServe as its users write it with, at the "
                             "comparison concurrency (empty: none)")
    parser.add_argument("--process-engine", action="store_true",
                        help="also measure modeldeploy with server.engine: process (each model in a worker process)")
    parser.add_argument("--baseline", action="store_true",
                        help="also measure the original app's way (Flask + waitress, one forward pass per request)")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false")
    parser.add_argument("--breakdown-seconds", type=float, default=15)
    parser.add_argument("--breakdown-rate", type=int, default=breakdown.RATE,
                        help="py-spy samples per second of each thread (200 made py-spy take most of a core here)")
    parser.add_argument("--threads-check", action="store_true",
                        help="also run modeldeploy with 1 torch thread and one per core, quiet and with a core busy")
    parser.add_argument("--peer-torch-threads", type=int, default=None,
                        help="torch threads of the peers (default: modeldeploy's choice; 0: torch's)")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long run for the test suite: tiny models, every server, no breakdown")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.warmup_seconds, args.reference_items = 1, 1, 8
        args.concurrency, args.compare_at, args.breakdown, args.baseline = "1,2", 2, False, True
        args.process_engine = True
        args.litserve_sweep = "4"
    args.models = args.models.split(",")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.reference_windows = [int(c) for c in args.reference_windows.split(",") if c]
    args.litserve_sweep = [int(b) for b in args.litserve_sweep.split(",") if b]
    args.settings = model_settings(args.settings)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.breakdown and not breakdown.PY_SPY.exists():
        raise SystemExit(f"no py-spy beside {sys.executable} (pip install py-spy), or run with --no-breakdown")
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = configure_torch_threads(0)  # the references run with modeldeploy's default too
    if args.peer_torch_threads is None:
        args.peer_torch_threads = chosen
    results: dict[str, Any] = {
        "machine": machine(args),
        "command": "smoke" if args.smoke else recorded_command(sys.argv[1:] if argv is None else argv),
        "settings": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, list, bool, dict))},
        "models": {}}
    for model, source in sources(args).items():
        results["models"][model] = bench_model(model, source, args)
    results["machine"]["load_average_after"] = os.getloadavg()
    results = json.loads(json.dumps(results))  # the report reads what results.json holds
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    report.write(results, args.out)
    print(f"wrote {args.out / 'results.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
