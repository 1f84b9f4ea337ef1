"""modeldeploy's batching without its HTTP front: what serving would reach if the front cost nothing.

A registry in this process serves the model as ``modeldeploy serve`` would (from the same config
file: bench/interleaved.py passes the harness's; OpenMP spins as the server sets them), and C threads call
``ServedModel.predict_texts`` in a closed loop, each sending its next text when answered, as wrk's
connections do. Between the in-process ideal window (bench/references.py: no queue, no threads, the
best split of each window) and the server, this separates what the batcher and planner cost from
what the HTTP front costs: on 2 cores the front's threads take CPU from torch's.

Runs in a process of its own (the interleaved benchmark starts it in its turn), so no other torch
work shares its OpenMP pools; prints one JSON line, ``{"C": {"items_per_s", "p50_ms", "p99_ms",
"errors"}}`` (errors: refusals and failures by type, which a closed loop beyond ``max_queue`` meets).

    python bench/registry_loop.py --config serve.yaml --model sentiment --concurrency 4,32
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
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
    parser.add_argument("--config", type=Path, required=True, help="the YAML file `modeldeploy serve` would read")
    parser.add_argument("--model", required=True, help="the served model the clients call")
    parser.add_argument("--concurrency", type=lambda text: [int(c) for c in text.split(",")], default=[32])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup-seconds", type=float, default=3)
    parser.add_argument("--texts", type=int, default=512, help="the review-like texts, cycled (wrk's bodies)")
    args = parser.parse_args()

    from modeldeploy.openmp import prefer_short_spins

    prefer_short_spins()  # as `modeldeploy serve` does, before torch is imported
    from modeldeploy.config import load_config
    from modeldeploy.registry import Registry

    registry = Registry(load_config(args.config))
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
