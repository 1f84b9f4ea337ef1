"""Prometheus metrics shared by the core (registry, batcher) and the app.

Defined once here so every layer records into the same objects; the app exposes them at
``/metrics``. Names follow Prometheus conventions (``_total``, ``_seconds``, base units).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

REQUESTS = Counter(
    "modeldeploy_requests_total", "HTTP requests answered, by model, route and status.",
    ["model", "route", "status"],
)
REQUEST_LATENCY = Histogram(
    "modeldeploy_request_duration_seconds", "HTTP request latency, by model and route.",
    ["model", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCH_SIZE = Histogram(
    "modeldeploy_batch_size", "Items per model forward pass, by model.",
    ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
QUEUE_DEPTH = Gauge("modeldeploy_queue_depth", "Items waiting for the model's inference thread.", ["model"])
ITEMS = Counter("modeldeploy_items_total", "Texts predicted, by model and outcome.", ["model", "outcome"])
MODEL_LOAD_SECONDS = Gauge("modeldeploy_model_load_seconds", "How long the model took to load.", ["model"])
MODEL_READY = Gauge("modeldeploy_model_ready", "1 when the model is ready to serve, else 0.", ["model"])
MODEL_STATE = Gauge(
    "modeldeploy_model_state", "1 for the model's current state (idle, loading, ready, failed).",
    ["model", "state"],
)


def merged_exposition(local: str, remote: Sequence[str], peers: Sequence[str] = ()) -> str:
    """This process's metrics plus those only recorded where the models run, and those of the
    front processes beside this one, as one exposition.

    With models served by other processes (the ray and process engines), the front records the
    HTTP requests and the models' states, while batch sizes, queue depths and item counts live in
    each replica. A ``modeldeploy_`` family with no sample here is taken from the replicas'
    expositions, each series summed over the replicas (counters, histogram buckets and queue
    depths add up). ``peers`` are the other fronts' own expositions (``server.fronts``): their
    ``modeldeploy_`` counters and histograms (requests, latencies) are added to this process's;
    gauges (a model's state) are this front's view, which every front shares.
    """
    families = [family for family in text_string_to_metric_families(local) if not family.name.endswith("_created")]
    sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    if peers:
        for family in families:
            if _added_over_fronts(family.name, family.type):
                _add_samples(sums.setdefault(family.name, {}), family.samples)
        for text in peers:
            for family in text_string_to_metric_families(text):
                if not _added_over_fronts(family.name, family.type):
                    continue
                if family.name not in sums:
                    sums[family.name] = {}
                    families.append(family)
                _add_samples(sums[family.name], family.samples)
    recorded_here = {family.name for family in families if family.samples}
    for text in remote:
        for family in text_string_to_metric_families(text):
            if (not family.name.startswith("modeldeploy_") or family.name in recorded_here
                    or family.name.endswith("_created")):  # a start time: summing it means nothing
                continue
            if family.name not in sums:
                sums[family.name] = {}
                if all(f.name != family.name for f in families):
                    families.append(family)
            _add_samples(sums[family.name], family.samples)
    lines = []
    for family in families:
        name = f"{family.name}_total" if family.type == "counter" else family.name  # as prometheus_client writes it
        lines.append(f"# HELP {name} {_escape(family.documentation, help_text=True)}")
        lines.append(f"# TYPE {name} {family.type}")
        if family.name in sums:
            samples = [(sample, dict(labels), value) for (sample, labels), value in sums[family.name].items()]
        else:
            samples = [(s.name, s.labels, s.value) for s in family.samples if not s.name.endswith("_created")]
        for sample, labels, value in samples:
            rendered = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
            lines.append(f"{sample}{{{rendered}}} {floatToGoString(value)}" if rendered else
                         f"{sample} {floatToGoString(value)}")
    return "\n".join(lines) + "\n"


def _added_over_fronts(name: str, kind: str) -> bool:
    return name.startswith("modeldeploy_") and kind in ("counter", "histogram")


def _add_samples(series: dict[tuple[str, tuple[tuple[str, str], ...]], float], samples: Sequence[Any]) -> None:
    """Add ``samples`` to ``series``, by sample name and labels (a start time, ``_created``, is left out:
    summing it means nothing)."""
    for sample in samples:
        if sample.name.endswith("_created"):
            continue
        key = (sample.name, tuple(sorted(sample.labels.items())))
        series[key] = series.get(key, 0.0) + sample.value


def _escape(text: str, help_text: bool = False) -> str:
    escaped = text.replace("\\", r"\\").replace("\n", r"\n")
    return escaped if help_text else escaped.replace('"', r"\"")
