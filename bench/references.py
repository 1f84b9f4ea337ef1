"""What the model itself does on the benchmark's texts, in-process with plain transformers (no
HTTP, no queue, no modeldeploy on the model path): the references the servers are judged against.

On the texts in arrival order (the order of the bodies file the load generator cycles through):

- batch-1: each text alone; its median latency is what a lone client cannot beat;
- arrival order: consecutive windows of C texts, each one padded batch (what a batcher that
  neither sorts nor splits does with C clients);
- ideal window: each window of C sorted by token length and split into the cheapest contiguous
  sub-batches (bench/ideal.py), priced by a cost function fitted to forward passes timed here on
  this model: the best a server can do with what C clients have sent, short of holding requests
  back to wait for others.

Each reports items/s, the best of two passes after a warm-up pass: the first pass over new shapes
pays for their kernels, and the fastest is the one least disturbed by other work on the machine.
"""

from __future__ import annotations

import statistics
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ideal
from plain import PlainModel

#: (rows, tokens) shapes timed to fit a model's cost function: small and large in both
#: dimensions, at most this many tokens each (the fit extrapolates beyond; timing 32 x 512
#: tokens of a base-size encoder on 2 cores would take seconds per shape).
CALIBRATION_ROWS, CALIBRATION_LENGTHS, CALIBRATION_TOKENS = (1, 4, 16, 32), (16, 64, 256, 512), 4096


def plugin_options(name: str, source: str | Path) -> dict[str, Any]:
    """:class:`PlainModel`'s options as the model's plugin would read this checkpoint, found without
    loading weights (the wrapper is handed the checkpoint's config in place of a model): the prefix
    and ``generate`` arguments of a summarizer, the stride of a token classifier's windows over a
    long text; so that every server and reference generates, and reads, exactly as modeldeploy does."""
    from transformers import AutoConfig

    from modeldeploy.plugins import get_catalog

    wrapper = get_catalog().models[name].wrapper_class(source=str(source))
    options: dict[str, Any] = {"prefix": "", "generation": {}, "stride": wrapper.settings.get("stride")}
    if hasattr(wrapper, "generation_kwargs"):
        wrapper.model = types.SimpleNamespace(config=AutoConfig.from_pretrained(source))
        options.update(prefix=wrapper.prefix, generation=wrapper.generation_kwargs())
    return options


def _pass(model: PlainModel, batches: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
    """Seconds for all ``batches`` one after another, and each batch's seconds."""
    durations = []
    for batch in batches:
        started = time.perf_counter()
        model.run(batch)
        durations.append(time.perf_counter() - started)
    return sum(durations), durations


def _best(model: PlainModel, batches: Sequence[Sequence[str]], passes: int = 2) -> tuple[float, list[float]]:
    """The fastest of ``passes`` timed passes, after an untimed one."""
    _pass(model, batches)
    return min((_pass(model, batches) for _ in range(passes)), key=lambda timed: timed[0])


def calibrate(model: PlainModel, long_text: str) -> tuple[ideal.Cost, float, list[tuple[int, int, float]]]:
    """Time forward passes of ``long_text`` cut to each calibration shape (fastest of two after a
    warm-up) and fit the cost function; returns it, its median relative error and the samples."""
    samples = []
    for rows in CALIBRATION_ROWS:
        for length in CALIBRATION_LENGTHS:
            if rows * length > CALIBRATION_TOKENS or length > model.max_length:
                continue
            encoded = model.encode([long_text] * rows, max_length=length)
            model.forward(encoded)
            timings = []
            for _ in range(2):
                started = time.perf_counter()
                model.forward(encoded)
                timings.append(time.perf_counter() - started)
            samples.append((rows, int(encoded["input_ids"].shape[1]), min(timings)))
    cost, error = ideal.fit(samples)
    return cost, error, samples


def windows(texts: Sequence[str], size: int) -> list[list[int]]:
    """Indices of consecutive windows of ``size`` arrivals."""
    return [list(range(start, min(start + size, len(texts)))) for start in range(0, len(texts), size)]


def ideal_batches(texts: Sequence[str], lengths: Sequence[int], size: int, cost: ideal.Cost) -> list[list[str]]:
    """Each window of ``size`` arrivals sorted by length and cut where ``cost`` says is cheapest."""
    batches = []
    for window in windows(texts, size):
        window.sort(key=lengths.__getitem__)
        start = 0
        for count in ideal.cheapest_split([lengths[i] for i in window], cost):
            batches.append([texts[i] for i in window[start : start + count]])
            start += count
    return batches


def predicted_ideal(lengths: Sequence[int], size: int, cost: ideal.Cost) -> float:
    """Items/s of the ideal window of ``size`` as the fitted cost prices it (forward passes only:
    no tokenizing), which costs nothing to compute for every concurrency of the curve."""
    seconds = 0.0
    for window in windows(lengths, size):
        ordered = sorted(lengths[i] for i in window)
        start = 0
        for count in ideal.cheapest_split(ordered, cost):
            seconds += cost(count, ordered[start + count - 1])
            start += count
    return len(lengths) / seconds


def measure(model: PlainModel, texts: Sequence[str], window_sizes: Sequence[int],
            predicted_sizes: Sequence[int] = ()) -> dict[str, Any]:
    """All references of ``model`` on ``texts`` (in arrival order): measured for each of
    ``window_sizes``, predicted by the fitted cost for each of ``predicted_sizes``."""
    lengths = model.token_lengths(texts)
    cost, error, samples = calibrate(model, " ".join(texts))
    seconds, latencies = _best(model, [[text] for text in texts])
    result: dict[str, Any] = {
        "items": len(texts),
        "tokens": {"median": statistics.median(lengths), "max": max(lengths),
                   "over_128": sum(length > 128 for length in lengths),
                   "rows": len(model.encode(texts)["input_ids"])},
        "cost": {**cost.as_dict(), "median_relative_error": round(error, 3), "samples": samples},
        "batch1": {"items_per_s": len(texts) / seconds, "p50_ms": statistics.median(latencies) * 1000},
        "windows": {},
        "predicted_ideal_items_per_s": {size: predicted_ideal(lengths, size, cost) for size in predicted_sizes},
    }
    for size in window_sizes:
        arrival, _ = _best(model, [[texts[i] for i in window] for window in windows(texts, size)])
        ideal_per_s, sub_batches = ideal_window(model, texts, lengths, size, cost)
        result["windows"][size] = {"arrival_items_per_s": len(texts) / arrival, "ideal_items_per_s": ideal_per_s,
                                   "ideal_sub_batches": sub_batches}
    return result


def ideal_window(model: PlainModel, texts: Sequence[str], lengths: Sequence[int], size: int,
                 cost: ideal.Cost) -> tuple[float, int]:
    """Items/s of the ideal window of ``size`` on ``texts`` (best of two passes), and its sub-batches."""
    batches = ideal_batches(texts, lengths, size, cost)
    best, _ = _best(model, batches)
    return len(texts) / best, len(batches)
