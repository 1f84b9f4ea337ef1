"""Request ids, access logs and Prometheus metrics for every request, and ``GET /metrics``.

Each request gets an id (a sane incoming ``X-Request-ID`` is kept so ids follow a call across
services; otherwise a new one) that is returned on the response and written on its access line.
Counters and latency histograms are labelled by route *template* and by model only when a view
named a served model (:func:`record_model`), so label cardinality stays bounded whatever URLs
clients send. Batch sizes, queue depth and model load metrics are recorded by the core.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modeldeploy import metrics
from modeldeploy.logs import ACCESS_LOGGER
from modeldeploy.metrics import merged_exposition

from .state import get_registry

REQUEST_ID_HEADER = "X-Request-ID"
#: Incoming ids are honoured only if short and made of these characters (safe in logs and headers).
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}")
#: Route label of requests that matched no route (404s, 405s): one value, not one per URL.
UNMATCHED_ROUTE = "unmatched"

access_log = logging.getLogger(ACCESS_LOGGER)
blueprint = Blueprint("observability", __name__)


@blueprint.get("/metrics")
def prometheus_metrics() -> Response:
    """This process's metrics, with those of the processes serving the models when they run elsewhere
    and the request counts of the other front processes when there are several."""
    body = generate_latest()
    registry = get_registry()
    remote, peers = registry.model_metric_texts(), registry.peer_metric_texts()
    if remote or peers:
        body = merged_exposition(body.decode("utf-8"), remote, peers).encode("utf-8")
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def record_model(name: str) -> None:
    """Label this request's metrics and access line with ``name`` (call once it is known to exist)."""
    g.model = name


def request_id_for(incoming: str | None) -> str:
    """The id a request goes by: a sane incoming ``X-Request-ID``, else a new one."""
    return incoming if incoming and _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


def record_request(environ: dict[str, Any], model: str, route: str, status: int, elapsed: float) -> str:
    """Count and log a request answered without Flask (the admission gate); returns its id."""
    request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID"))
    _record(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""), model, route, status, elapsed,
            request_id)
    return request_id


def _record(method: str, path: str, model: str, route: str, status: int, elapsed: float, request_id: str) -> None:
    metrics.REQUESTS.labels(model, route, str(status)).inc()
    metrics.REQUEST_LATENCY.labels(model, route).observe(elapsed)
    access_log.info(
        "%s %s %s model=%s %.1fms request_id=%s", method, path, status, model or "-", elapsed * 1000, request_id,
        extra={"request_id": request_id, "method": method, "path": path, "model": model or None,
               "status": status, "duration_ms": round(elapsed * 1000, 3)},
    )


def _start() -> None:
    g.request_started = time.perf_counter()
    g.request_id = request_id_for(request.headers.get(REQUEST_ID_HEADER))


def _finish(response: Response) -> Response:
    elapsed = time.perf_counter() - g.get("request_started", time.perf_counter())
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
    request_id = g.get("request_id") or uuid.uuid4().hex
    response.headers[REQUEST_ID_HEADER] = request_id
    _record(request.method, request.path, g.get("model", ""), route, response.status_code, elapsed, request_id)
    return response


def register(app: Flask) -> None:
    """Install the per-request hooks on ``app`` (``/metrics`` comes with :data:`blueprint`)."""
    app.before_request(_start)
    app.after_request(_finish)
