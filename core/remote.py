"""A registry whose models run elsewhere: the seam between the app and an engine such as Ray Serve.

The app only asks a :class:`~modeldeploy.registry.Registry` for statuses and results. A
:class:`RemoteRegistry` answers the same questions for models that other processes (or machines)
serve: each model has a :class:`ModelClient` that sends validated texts to wherever the model runs
and reports how it is doing. The model's own process runs the ordinary local registry, batcher and
planner, so loading, retries, batching and error messages are the same on every engine.

Errors cross the wire as :class:`RemoteFailure` (the core error's class, message and
``Retry-After``) and are raised again on this side, so an overloaded or failing model answers
the same status and message over HTTP whichever engine serves it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from prometheus_client import generate_latest

from .cancellation import Cancellation
from .config import Config, ModelConfig
from .errors import (
    AttemptTimeoutError,
    InputTypeError,
    InvalidInputError,
    ModelDeployError,
    ModelLoadError,
    ModelNotReadyError,
    OverloadedError,
    PredictionError,
    PredictionTimeoutError,
    RequestCancelledError,
    StoreError,
    StoreUnavailableError,
    UnsupportedOperationError,
)
from .plugins import Catalog, ModelEntry
from .registry import FAILED, IDLE, LOADING, ModelStatus, Registry, ServedModel

log = logging.getLogger(__name__)

#: Core errors raised again as themselves on the caller's side (predictions' and operators' loads'; the
#: first class an error is an instance of); anything else becomes PredictionError.
_FAITHFUL_ERRORS = (ModelNotReadyError, OverloadedError, PredictionTimeoutError, InvalidInputError,
                    InputTypeError, PredictionError, RequestCancelledError, ModelLoadError,
                    StoreUnavailableError, StoreError, AttemptTimeoutError)


@dataclass(frozen=True)
class RemoteFailure:
    """A core error as it travels back from the process that serves a model."""

    kind: type[ModelDeployError]
    message: str
    retry_after: int | None = None

    @classmethod
    def of(cls, exc: ModelDeployError) -> RemoteFailure:
        kind = next((k for k in _FAITHFUL_ERRORS if isinstance(exc, k)), PredictionError)
        return cls(kind, str(exc), getattr(exc, "retry_after", None))

    def error(self) -> ModelDeployError:
        if self.retry_after is not None:
            return self.kind(self.message, retry_after=self.retry_after)  # type: ignore[call-arg]
        return self.kind(self.message)


@dataclass(frozen=True)
class ReplicaReport:
    """How a model is doing where it runs: its status and what the app shows of the loaded model."""

    status: ModelStatus
    device: str | None = None
    result_shape: tuple[int, ...] | None = None

    @classmethod
    def of(cls, served: ServedModel) -> ReplicaReport:
        wrapper = served.wrapper
        if wrapper is None:
            return cls(served.status)
        return cls(served.status, wrapper.device, tuple(wrapper.result_shape()))


class ModelService:
    """The serving side of a model reached remotely: the local registry serving just that model,
    answering in the terms that travel (results or a :class:`RemoteFailure`, reports, metrics).
    An engine runs one in each replica process."""

    def __init__(self, config: Config, name: str) -> None:
        self._registry = Registry(replace(config, serve=(name,)))
        self._registry.start(background=False)  # a replica takes requests once its model was tried
        self._served = self._registry.model(name)

    def predict(self, texts: list[str], timeout: float | None = None,
                cancellation: Cancellation | None = None) -> list[Any] | RemoteFailure:
        try:
            return self._served.predict_texts(texts, timeout, cancellation)
        except ModelDeployError as exc:
            return RemoteFailure.of(exc)

    def report(self) -> ReplicaReport:
        return ReplicaReport.of(self._served)

    def load(self, source: str | None = None, sha256: str | None = None) -> ReplicaReport | RemoteFailure:
        """An operator's load, as the local registry does it: the version serving keeps answering
        until the new one is swapped in, and a failure leaves it serving."""
        try:
            self._registry.load_model(self._served.name, source, sha256)
        except ModelDeployError as exc:
            return RemoteFailure.of(exc)
        return self.report()

    def unload(self) -> ReplicaReport:
        """An operator's unload: returns once what the model had accepted is answered."""
        self._registry.unload_model(self._served.name)
        return self.report()

    @staticmethod
    def metrics() -> str:
        """This process's Prometheus exposition (batch sizes, queue depth, items) for the front's /metrics."""
        return generate_latest().decode("utf-8")

    def close(self) -> None:
        self._registry.close(timeout=0)


class ModelClient(Protocol):
    """Reaches one model served elsewhere."""

    def predict(self, texts: Sequence[str], timeout: float | None = None) -> list[Any]:
        """Results for validated texts, in order, within ``timeout`` seconds (None: the model's own
        timeout); raises the core's errors (OverloadedError, ...)."""

    def report(self) -> ReplicaReport:
        """The model's status where it runs; raises ModelDeployError when no replica answers."""

    def metric_texts(self) -> list[str]:
        """The Prometheus exposition of each process serving the model (those that answer)."""


class _LoadedView:
    """The part of a loaded wrapper the app reads (device, a result's shape), as reported."""

    def __init__(self, report: ReplicaReport) -> None:
        self.device = report.device or "unknown"
        self._shape = list(report.result_shape or ())

    def result_shape(self) -> list[int]:
        return list(self._shape)


class RemoteServedModel(ServedModel):
    """A model served elsewhere: its status is what its replicas last reported."""

    def __init__(self, entry: ModelEntry, config: ModelConfig, client: ModelClient) -> None:
        self.client = client
        self.report: ReplicaReport | None = None
        super().__init__(entry, config, start_loading=lambda served: None)
        self.set_status(ModelStatus(LOADING))

    @property
    def wrapper(self) -> Any:  # the reported view of the wrapper, not a ModelWrapper
        report = self.report
        return _LoadedView(report) if report is not None and report.device is not None else None

    def _serving(self) -> bool:
        return True

    def raise_unless_ready(self) -> None:
        """As the local model's, except for an idle (lazy) model: its request goes on to the replica,
        whose registry starts loading on that request and answers "loading" itself."""
        if self.status.state != IDLE:
            super().raise_unless_ready()

    def show(self, report: ReplicaReport) -> None:
        """Take ``report`` (just received from a replica) as the model's state."""
        self.report = report
        self.set_status(report.status)

    def predict_texts(self, texts: Sequence[str], timeout: float | None = None,
                      cancellation: Cancellation | None = None) -> list[Any]:
        """As the local model's, except that a request already sent to a replica runs there to the
        end (its queue is the replica's): a caller gone before it is sent sends nothing."""
        self.raise_unless_ready()
        if cancellation is not None and cancellation.cancelled:
            raise RequestCancelledError(f"model {self.name!r}: the caller went away before the request was sent")
        return self.client.predict(texts, timeout)

    def _queue_refusal(self, timeout: float | None, reserve: bool = False) -> OverloadedError | None:
        return None  # the queues are the replicas': they refuse for themselves

    def refresh(self) -> None:
        """Ask a replica how the model is doing; a model no replica answers for is failed, saying why
        (one too busy to answer keeps its status: the report waits in the same queue as requests)."""
        try:
            report = self.client.report()
        except (OverloadedError, PredictionTimeoutError):
            return  # every replica is busy answering requests: alive, and its last report stands
        except ModelDeployError as exc:
            self.report = None
            self.set_status(ModelStatus(FAILED, f"no replica of model {self.name!r} answers: {exc}",
                                        fix="see the engine's replica logs (Ray dashboard or `ray logs`)"))
            return
        self.show(report)


class RemoteRegistry(Registry):
    """The registry of an app whose models run elsewhere, each reached through its client.

    Statuses are refreshed every ``refresh_seconds`` in the background (the app's health and
    readiness read them without a round trip); predictions go straight to the client.
    Operators' load and unload belong to the engine (it rolls replicas over), so they are refused.
    """

    #: The engine whose processes serve the models (what operators are told to restart).
    engine = "ray"

    def __init__(self, config: Config, clients: Mapping[str, ModelClient], catalog: Catalog | None = None,
                 refresh_seconds: float = 1.0) -> None:
        self._clients = dict(clients)
        self._refresh_seconds = refresh_seconds
        super().__init__(config, catalog)

    def _new_served_model(self, entry: ModelEntry, config: ModelConfig) -> ServedModel:
        if entry.name not in self._clients:
            raise ValueError(f"no client for served model {entry.name!r}")
        return RemoteServedModel(entry, config, self._clients[entry.name])

    def start(self, background: bool = True) -> None:
        """Keep every model's status fresh from a background thread (the first read at once);
        ``background=False`` also waits for that first read."""
        first_read = threading.Event()
        threading.Thread(target=self._keep_refreshing, args=(first_read,), name="modeldeploy-remote-status",
                         daemon=True).start()
        if not background:
            first_read.wait()

    def wait_until_loaded(self, timeout: float | None = None) -> bool:
        return True  # the engine reports models once their replicas run

    def refresh_statuses(self) -> None:
        for served in list(self._models.values()):
            if isinstance(served, RemoteServedModel):
                served.refresh()

    def _keep_refreshing(self, first_read: threading.Event) -> None:
        while True:
            try:
                self.refresh_statuses()
            except Exception:  # noqa: BLE001 - a status poll must never end the poller
                log.exception("refreshing the models' statuses failed")
            first_read.set()
            if self._closing.wait(self._refresh_seconds):
                return

    def model_metric_texts(self) -> list[str]:
        return [text for client in self._clients.values() for text in client.metric_texts()]

    def load_model(self, name: str, source: str | None = None, sha256: str | None = None) -> ModelStatus:
        raise UnsupportedOperationError(_engine_manages(self.engine))

    def unload_model(self, name: str) -> None:
        raise UnsupportedOperationError(_engine_manages(self.engine))

    def close(self, timeout: float | None = 10.0) -> None:
        self._closing.set()


def _engine_manages(engine: str) -> str:
    """Why operators' loads and unloads are refused on ``engine``, and what to do instead."""
    rollover = (": Ray Serve rolls the replicas over to the new version without dropping requests"
                if engine == "ray" else "")
    return (f"this server's models run in processes that their engine manages (server.engine: {engine}); "
            f"change the config and run `modeldeploy serve --engine {engine}` again{rollover}")
