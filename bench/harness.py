"""The benchmark, end to end: the in-process limit, then modeldeploy, the original app's way and
LitServe under the same load (each alone, back to back), then an overload run; writes results.json,
results.md and throughput.png next to this file (or under --out).

    bash bench/run.sh            # the documented command (builds base-size models once)
    python bench/harness.py --models-dir DIR [--smoke]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))

import corpus  # noqa: E402
import inprocess  # noqa: E402
import loadgen  # noqa: E402
import report  # noqa: E402
from servers import PYTHON, TORCH_THREADS_ENV, Server, free_port  # noqa: E402

from modeldeploy.config import BatchConfig  # noqa: E402
from modeldeploy.batching import configure_torch_threads  # noqa: E402
from modeldeploy.plugins import get_catalog  # noqa: E402

BENCH = Path(__file__).parent


def modeldeploy_server(model: str, source: Path, work: Path, label: str, max_queue: int, max_batch_size: int,
                       torch_threads: int = 0, http_threads: int = 0) -> Server:
    """modeldeploy as users run it; ``http_threads`` 0 is its default pool, sized for backpressure."""
    port = free_port()
    config = work / f"{label}.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "serve": [model],
        "models": {model: {"source": str(source), "batch": {"max_batch_size": max_batch_size, "max_queue": max_queue}}},
        "server": {"threads": http_threads, "torch_threads": torch_threads},
    }))
    command = [PYTHON, "-m", "modeldeploy", "serve", "--config", str(config), "--port", str(port)]
    return Server(label, command, port, "/health/ready", work)


def peer_servers(model: str, source: Path, work: Path, args: argparse.Namespace) -> dict[str, Server]:
    """The three servers of one model, not started: each is measured alone (an idle LitServe
    still polls its queues, about 10% of a core, which would slow whichever server shares the box;
    results.json records under ``running_alongside`` what else ran during each measurement)."""
    baseline_port, litserve_port = free_port(), free_port()
    peer_env = {TORCH_THREADS_ENV: str(args.peer_torch_threads)} if args.peer_torch_threads else {}
    return {
        "modeldeploy": modeldeploy_server(model, source, work, f"modeldeploy-{model}", args.max_queue,
                                          args.max_batch_size),
        "baseline": Server(f"baseline-{model}",
                           [PYTHON, str(BENCH / "baseline_app.py"), model, str(source), str(baseline_port)],
                           baseline_port, "/health", work, peer_env),
        "litserve": Server(f"litserve-{model}",
                           [PYTHON, str(BENCH / "litserve_app.py"), model, str(source), str(litserve_port),
                            str(args.litserve_batch), str(args.litserve_timeout)],
                           litserve_port, "/health", work, peer_env),
    }


def bench_model(model: str, source: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    print(f"== {model}: in-process limit", flush=True)
    wrapper = get_catalog().models[model].wrapper_class(source=str(source), device="cpu").ensure_loaded()
    texts = corpus.texts(args.limit_items, seed=1)
    result: dict[str, Any] = {"limit": inprocess.limit(wrapper, texts, args.batch_sizes, texts[: args.latency_items])}
    del wrapper
    print(json.dumps(result["limit"]), flush=True)
    bodies = corpus.write_bodies(work / f"{model}-bodies.jsonl", model)
    runs: dict[str, dict[str, Any]] = {}
    result["peak_memory_mb"], result["running_alongside"] = {}, {}
    for name, server in peer_servers(model, source, work, args).items():  # one at a time, back to back
        server.start()
        try:
            server.wait_ready()
            result["running_alongside"][name] = sorted(s.label for s in Server.running if s is not server)
            loadgen.wrk(server.url, bodies, 8, args.warmup_seconds)  # warm-up, not recorded
            runs[name] = {}
            for concurrency in args.concurrency:
                runs[name][concurrency] = run = loadgen.wrk(server.url, bodies, concurrency, args.seconds)
                print(f"{model} {name} c={concurrency}: {run['items_per_s']:.1f}/s p50 {run['p50_ms']:.0f} "
                      f"p95 {run['p95_ms']:.0f} p99 {run['p99_ms']:.0f} ms {run['statuses']}", flush=True)
            result["peak_memory_mb"][name] = server.peak_memory_mb()
        finally:
            server.stop()
    result["runs"] = runs
    if args.threads_check:
        result["threads_check"] = threads_check(model, source, work, bodies, args)
    if args.overload:
        result["overload"] = overload(model, source, work, bodies, args)
    return result


def overload(model: str, source: Path, work: Path, bodies: Path, args: argparse.Namespace) -> dict[str, Any]:
    """More clients than the queue holds. The server gets more HTTP threads than clients: with
    fewer, waitress itself queues the surplus connections, unbounded, before the app sees them."""
    print(f"== {model}: overload, concurrency {args.overload_concurrency}, max_queue {args.overload_queue}", flush=True)
    server = modeldeploy_server(model, source, work, f"modeldeploy-{model}-overload", args.overload_queue,
                                args.max_batch_size, http_threads=args.overload_concurrency + 16).start()
    try:
        server.wait_ready()
        loadgen.wrk(server.url, bodies, 8, args.warmup_seconds)
        result = loadgen.overload("127.0.0.1", server.port, bodies, args.overload_concurrency, args.seconds)
    finally:
        server.stop()
    result.update(max_queue=args.overload_queue, concurrency=args.overload_concurrency,
                  http_threads=args.overload_concurrency + 16)
    print(json.dumps(result), flush=True)
    return result


def threads_check(model: str, source: Path, work: Path, bodies: Path, args: argparse.Namespace) -> dict[str, Any]:
    """modeldeploy at concurrency 32 with 1 torch thread and with one per core, back to back, on
    the quiet machine and with one core kept busy by another process (what ``server.torch_threads``
    advises on: intra-op threads wait for each other at every barrier, so a stolen core stalls all)."""
    runs: dict[str, dict[int, Any]] = {"quiet": {}, "one_core_busy": {}}
    for condition, by_threads in runs.items():
        for threads in sorted({1, len(os.sched_getaffinity(0))}):
            server = modeldeploy_server(model, source, work, f"modeldeploy-{model}-threads{threads}",
                                        args.max_queue, args.max_batch_size, threads).start()
            hog = None
            try:
                server.wait_ready()
                if condition == "one_core_busy":
                    hog = subprocess.Popen([PYTHON, "-c", "while True: pass"])
                loadgen.wrk(server.url, bodies, 8, args.warmup_seconds)
                by_threads[threads] = loadgen.wrk(server.url, bodies, min(32, max(args.concurrency)), args.seconds)
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
                server.stop()
            print(f"{model} modeldeploy torch_threads={threads} {condition}: "
                  f"{by_threads[threads]['items_per_s']:.1f}/s", flush=True)
    return runs


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "load_average": os.getloadavg(), "memory_gb": round(memory_gb, 1),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "date": datetime.date.today().isoformat()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", type=Path, required=True, help="output of `python -m modeldeploy.testing build`")
    parser.add_argument("--models", default="sentiment,ner,summarization")
    parser.add_argument("--out", type=Path, default=BENCH)
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--concurrency", default="1,8,32,128")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup-seconds", type=float, default=3)
    parser.add_argument("--batch-sizes", default="1,8,16,32")
    parser.add_argument("--limit-items", type=int, default=96)
    parser.add_argument("--latency-items", type=int, default=48)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-queue", type=int, default=BatchConfig.max_queue)
    parser.add_argument("--litserve-batch", type=int, default=16)
    parser.add_argument("--litserve-timeout", type=float, default=0.01)
    parser.add_argument("--overload-concurrency", type=int, default=128)
    parser.add_argument("--overload-queue", type=int, default=16)
    parser.add_argument("--no-overload", dest="overload", action="store_false")
    parser.add_argument("--overload-only", action="store_true",
                        help="re-run only the overload part into the existing results.json under --out")
    parser.add_argument("--no-threads-check", dest="threads_check", action="store_false")
    parser.add_argument("--peer-torch-threads", type=int, default=None,
                        help="torch threads of the baseline and LitServe (default: modeldeploy's choice; 0: torch's)")
    parser.add_argument("--smoke", action="store_true", help="seconds-long run for the test suite (tiny models)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.warmup_seconds, args.limit_items, args.latency_items = 1, 1, 8, 4
        args.concurrency, args.batch_sizes, args.overload_concurrency = "2", "1,4", 8
        args.overload_queue, args.threads_check = 2, False
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    chosen = configure_torch_threads(0)  # the in-process limit runs with modeldeploy's default too
    if args.peer_torch_threads is None:
        args.peer_torch_threads = chosen
    args.out.mkdir(parents=True, exist_ok=True)
    if args.overload_only:
        results = json.loads((args.out / "results.json").read_text())
        for model in args.models.split(","):
            bodies = corpus.write_bodies(args.work / f"{model}-bodies.jsonl", model)
            results["models"][model]["overload"] = overload(model, args.models_dir / model, args.work, bodies, args)
    else:
        results = {"machine": machine(), "command": "bash bench/run.sh" if not args.smoke else "smoke",
                   "settings": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, list, bool))},
                   "models": {}}
        for model in args.models.split(","):
            results["models"][model] = bench_model(model, args.models_dir / model, args.work, args)
    results["machine"]["load_average_after"] = os.getloadavg()
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    report.write(results, args.out)
    print(f"wrote {args.out / 'results.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
