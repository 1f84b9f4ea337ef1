"""Prometheus metrics shared by the core (registry, batcher) and the app.

Defined once here so every layer records into the same objects; the app exposes them at
``/metrics``. Names follow Prometheus conventions (``_total``, ``_seconds``, base units).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
