"""The limit: what the model does in-process, with no HTTP and no queue in the way."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import torch


def throughput(wrapper: Any, texts: list[str], batch_size: int, sort_by_length: bool) -> float:
    """Items per second over ``texts`` in batches of ``batch_size``: arrival order or length-sorted."""
    order = list(range(len(texts)))
    if sort_by_length:
        lengths = wrapper.token_lengths([wrapper.prepare_data(t) for t in texts])
        order.sort(key=lengths.__getitem__)
    started = time.perf_counter()
    for start in range(0, len(order), batch_size):
        wrapper.run_batch([texts[i] for i in order[start : start + batch_size]])
    return len(texts) / (time.perf_counter() - started)


def batch1_latency_ms(wrapper: Any, texts: list[str]) -> float:
    """Median milliseconds of one text alone (what a lone request cannot beat)."""
    timings = []
    for text in texts:
        started = time.perf_counter()
        wrapper.run_batch([text])
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def best_throughput(wrapper: Any, texts: list[str], batch_size: int, sort_by_length: bool, runs: int = 2) -> float:
    """The fastest of ``runs`` passes: the first pass over new shapes also pays for building
    their kernels, and the fastest pass is the one least disturbed by other work on the machine."""
    return max(throughput(wrapper, texts, batch_size, sort_by_length) for _ in range(runs))


def limit(wrapper: Any, texts: list[str], batch_sizes: list[int], latency_texts: list[str]) -> dict[str, Any]:
    """Best batch size in both orders, batch-1 latency, and the torch-thread check at the best size."""
    arrival = {b: best_throughput(wrapper, texts, b, False) for b in batch_sizes}
    grouped = {b: best_throughput(wrapper, texts, b, True) for b in batch_sizes}
    best = max(grouped, key=grouped.get)
    threads = torch.get_num_threads()
    by_threads = {}
    for count in sorted({1, threads, len(os.sched_getaffinity(0))}):
        torch.set_num_threads(count)
        by_threads[count] = best_throughput(wrapper, texts, best, True)
    torch.set_num_threads(threads)
    return {
        "arrival_order": arrival,
        "length_grouped": grouped,
        "best_batch_size": best,
        "limit_items_per_s": grouped[best],
        "arrival_best_items_per_s": max(arrival.values()),
        "batch1_latency_ms": batch1_latency_ms(wrapper, latency_texts),
        "grouped_by_torch_threads": by_threads,
    }
