"""modeldeploy's batching without its HTTP front: what serving would reach if the front cost nothing.

A registry in this process serves the model as ``modeldeploy serve`` would (the same config: the
harness's batch settings, torch threads and OpenMP spins), and C threads call
``ServedModel.predict_texts`` in a closed loop, each sending its next text when answered, as wrk's
connections do. Between the in-process ideal window (bench/references.py: no queue, no threads, the
best split of each window) and the server, this separates what the batcher and planner cost from
what the HTTP front costs: on 2 cores the front's threads take CPU from torch's.

Runs in a process of its own (the interleaved benchmark starts it in its turn), so no other torch
work shares its OpenMP pools; prints one JSON line, ``{"C": {"items_per_s", "p50_ms", "p99_ms",
"errors"}}`` (errors: refusals and failures by type, which a closed loop beyond ``max_queue`` meets).

    python bench/registry_loop.py --model sentiment --source bench/.work/minilm --concurrency 4,32
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reviews  # noqa: E402


def closed_loop(served: Any, texts: list[str], concurrency: int, seconds: float) -> dict[str, Any]:
    """``concurrency`` threads, each sending its next text as soon as it is answered, for ``seconds``."""
    from modeldeploy.errors import ModelDeployError

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(first: int) -> None:
        mine, failed, index = [], [], first
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                served.predict_texts([texts[index % len(texts)]])
            except ModelDeployError as exc:  # refused or failed: counted, not timed, as wrk's non-200s
                failed.append(type(exc).__name__)
            else:
                mine.append(time.perf_counter() - started)
            index += concurrency
        with lock:
            latencies.extend(mine)
            errors.extend(failed)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else None
    return {"items_per_s": len(latencies) / elapsed, "p50_ms": 1000 * cuts[49] if cuts else None,
            "p99_ms": 1000 * cuts[98] if cuts else None, "errors": dict(Counter(errors))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--concurrency", type=lambda text: [int(c) for c in text.split(",")], default=[32])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup-seconds", type=float, default=3)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--regroup-wait", type=float, default=0.1)
    parser.add_argument("--texts", type=int, default=512, help="the review-like texts, cycled (wrk's bodies)")
    args = parser.parse_args()

    from modeldeploy.openmp import prefer_short_spins

    prefer_short_spins()  # as `modeldeploy serve` does, before torch is imported
    from modeldeploy.config import load_config
    from modeldeploy.registry import Registry

    served_config = {"source": str(args.source), "device": args.device,
                     "batch": {"max_batch_size": args.max_batch_size, "max_queue": args.max_queue,
                               "regroup_wait": args.regroup_wait}}
    with tempfile.TemporaryDirectory() as work:
        config = Path(work) / "config.yaml"
        config.write_text(json.dumps({"serve": [args.model], "models": {args.model: served_config}}))  # JSON is YAML
        registry = Registry(load_config(config))
    registry.start(background=False)
    try:
        served = registry.model(args.model)
        texts = reviews.reviews(args.texts)
        closed_loop(served, texts, 8, args.warmup_seconds)  # warm-up at 8, as the servers get
        runs = {str(c): closed_loop(served, texts, c, args.seconds) for c in args.concurrency}
    finally:
        registry.close()
    print(json.dumps(runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
