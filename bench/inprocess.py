"""What a modeldeploy wrapper does in-process, with no HTTP and no queue in the way (bench/embeddings.py's
references; the main benchmark's are plain transformers, bench/references.py)."""

from __future__ import annotations

import statistics
import time
from typing import Any


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
