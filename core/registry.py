"""The registry: the served models by name, each with its status, wrapper and batcher.

The app, the CLI and health checks read it; they never touch torch or a plugin directly. Models
load in the background at start-up, all at once (the server answers while they load), or, when
the config says ``lazy: true``, on first use. Each load attempt may take ``load_timeout`` seconds;
a model whose attempt fails or times out is ``failed`` with its reason and the time of its next
attempt, and is tried again with backoff (``server.load_retry_seconds``, doubling up to
``load_retry_max_seconds``) until it is ready: a bucket briefly down or a folder mounted late
heals without a restart, and one model never holds back another. Every model loads through
:func:`modeldeploy.loading.load`, the same path as ``modeldeploy.load()``.

A request looks its model up once (:meth:`Registry.model`, unknown names raise) and hands the
:class:`ServedModel` its validated texts (:meth:`ServedModel.predict_texts`), which are prepared
once and queued on the model's batcher.

Operators change what is served while it runs (:meth:`Registry.load_model`,
:meth:`Registry.unload_model`, behind the app's admin-only model-repository routes). A new version
loads beside the one serving and is swapped in when ready; the old one answers everything it had
accepted before it stops (:meth:`Batcher.retire`), and a request that reaches it after the swap
goes on to the new one, so no request is dropped.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from . import collector, heap, loading, metrics
from .batching import Batcher, configure_torch_threads
from .cancellation import Cancellation
from .config import Config, ModelConfig
from .errors import (
    AttemptTimeoutError,
    BatcherRetiredError,
    ModelDeployError,
    ModelLoadError,
    ModelNotReadyError,
    ModelNotServedError,
    ModelUnloadedError,
    OverloadedError,
    UnknownModelError,
    failure_reason,
)
from .inputs import normalize_texts
from .plugins import PLUGIN_FAULTS, Catalog, ModelEntry, get_catalog
from .retrying import Backoff, call_with_timeout
from .wrapper import ModelWrapper

log = logging.getLogger(__name__)

IDLE, LOADING, READY, FAILED, UNLOADED, STUCK = "idle", "loading", "ready", "failed", "unloaded", "stuck"
STATES = (IDLE, LOADING, READY, FAILED, UNLOADED, STUCK)
#: How often a request follows a swap to the next version before giving up (swaps are rare).
_MAX_SWAPS_FOLLOWED = 3


@dataclass(frozen=True)
class ModelStatus:
    """What a model is doing; ``reason`` is set when it failed, ``demo`` (why) when it serves the
    demo weights of its task instead of its own (``demo_fallback``)."""

    state: str
    reason: str | None = None
    load_seconds: float | None = None
    demo: str | None = None
    #: What to do about a failure, when the reason does not say.
    fix: str | None = None
    #: Load attempts made so far, and when (epoch seconds) the next one starts after a failure.
    attempts: int = 0
    retry_at: float | None = None

    def retry_in(self, now: float | None = None) -> float | None:
        """Seconds until the next load attempt, or None when none is scheduled."""
        return None if self.retry_at is None else max(0.0, self.retry_at - (time.time() if now is None else now))

    def as_dict(self) -> dict[str, Any]:
        retry_in = self.retry_in()
        return {"state": self.state, "reason": self.reason, "fix": self.fix, "load_seconds": self.load_seconds,
                "demo": self.demo, "attempts": self.attempts,
                "next_retry_at": None if self.retry_at is None else
                datetime.fromtimestamp(self.retry_at, timezone.utc).isoformat(timespec="seconds"),
                "next_retry_in_seconds": None if retry_in is None else math.ceil(retry_in)}


class ServedModel:
    """One served model: its catalog entry and config, its status and, once ready, its batcher."""

    def __init__(self, entry: ModelEntry, config: ModelConfig,
                 start_loading: Callable[["ServedModel"], None]) -> None:
        self.entry = entry
        self.config = config
        self._status = ModelStatus(IDLE)
        self._recorded: ModelStatus | None = None
        self.batcher: Batcher | None = None
        #: Bumped by every operator load or unload: a background load of an older generation
        #: neither swaps its result in nor retries.
        self.generation = 0
        self._start_loading = start_loading
        self._record(self._status)

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def source(self) -> str:
        """The configured source, else the plugin's default."""
        return self.config.source or self.entry.wrapper_class.default_source

    @property
    def wrapper(self) -> ModelWrapper | None:
        """The loaded instance, or None while it is not ready."""
        return self.batcher.wrapper if self.batcher is not None else None

    @property
    def status(self) -> ModelStatus:
        """The model's status; a ready model whose running batch has outlived its timeout (a
        plugin's ``predict_batch`` hangs) is ``stuck``, not ready, until that batch returns."""
        status = self._status
        batcher = self.batcher
        overdue = batcher.overdue_round_seconds() if status.state == READY and batcher is not None else None
        if overdue is not None:
            status = replace(status, state=STUCK, reason=(
                f"a batch has been computing for {overdue:.0f} s, longer than the model's timeout "
                f"({self.config.batch.timeout:g} s): its predict_batch may hang; new requests are refused "
                "until it returns"))
        if status.state != (self._recorded.state if self._recorded else None):
            self._record(status)
        return status

    def set_status(self, status: ModelStatus) -> None:
        self._status = status
        self._record(status)

    def ready_batcher(self) -> Batcher:
        """The batcher of a ready model, or ModelNotReadyError saying why not (an idle, lazy
        model starts loading)."""
        self.raise_unless_ready()
        batcher = self.batcher
        if batcher is None:  # taken away by an operator's unload since the check
            raise _changing_versions(self.name)
        return batcher

    def raise_unless_ready(self) -> None:
        """Return when the model serves; else raise ModelNotReadyError saying why not (an idle,
        lazy model starts loading)."""
        state = self.status.state
        if state == READY:
            if self._serving():
                return
            raise _changing_versions(self.name)
        if state == IDLE:
            self._start_loading(self)
            raise ModelNotReadyError(f"model {self.name!r} is loading (lazy start); retry shortly")
        if state == LOADING:
            raise ModelNotReadyError(f"model {self.name!r} is still loading; retry shortly")
        if state == UNLOADED:
            raise ModelUnloadedError(self.name)
        if state == STUCK:
            raise ModelNotReadyError(f"model {self.name!r} is stuck: {self.status.reason}", retry_after=5)
        retry_in = self.status.retry_in()
        if retry_in is None:
            raise ModelNotReadyError(f"model {self.name!r} failed to load: {self.status.reason}", retry_after=60)
        raise ModelNotReadyError(f"model {self.name!r} failed to load: {self.status.reason} (next attempt in "
                                 f"{math.ceil(retry_in)} s)", retry_after=max(1, math.ceil(retry_in)))

    def _serving(self) -> bool:
        """Whether what answers requests is in place (here: a batcher)."""
        return self.batcher is not None

    def admission_refusal(self, timeout: float | None = None, reserve: bool = False) -> ModelDeployError | None:
        """The error a one-text request with ``timeout`` would get now (not ready, overloaded, too
        late for its deadline), or None: judged without its texts, so the HTTP front can refuse
        before parsing the body. A request let through is still checked in full; with
        ``reserve`` it counts as queued until :meth:`request_arrived` (see ``Batcher.refusal``)."""
        try:
            self.raise_unless_ready()
        except ModelNotReadyError as exc:
            return exc
        return self._queue_refusal(timeout, reserve)

    def _queue_refusal(self, timeout: float | None, reserve: bool = False) -> OverloadedError | None:
        """Why the queue this process keeps for the model would refuse such a request, or None."""
        batcher = self.batcher
        return batcher.refusal(timeout, reserve) if batcher is not None else None

    def request_arrived(self) -> None:
        """A request judged with ``reserve`` has reached a thread: it no longer holds a place."""
        batcher = self.batcher
        if batcher is not None:
            batcher.end_reservation()

    def predict_texts(self, texts: Sequence[str], timeout: float | None = None,
                      cancellation: Cancellation | None = None) -> list[Any]:
        """Results for validated texts, in order: each prepared once, then batched. ``timeout``
        (seconds) lowers the model's own deadline; cancelling ``cancellation`` takes the texts
        out of the queue. A request that reaches a version just swapped out goes on to the one
        now serving."""
        for _ in range(_MAX_SWAPS_FOLLOWED):
            batcher = self.ready_batcher()
            try:
                return batcher.submit(batcher.wrapper.prepare_texts(texts), timeout, cancellation)
            except BatcherRetiredError:
                continue
        raise ModelNotReadyError(f"model {self.name!r} is being swapped repeatedly; retry shortly", retry_after=1)

    def _record(self, status: ModelStatus) -> None:
        self._recorded = status
        for state in STATES:
            metrics.MODEL_STATE.labels(self.name, state).set(1 if status.state == state else 0)
        metrics.MODEL_READY.labels(self.name).set(1 if status.state == READY else 0)
        if status.load_seconds is not None:
            metrics.MODEL_LOAD_SECONDS.labels(self.name).set(status.load_seconds)


class Registry:
    """Serves every installed model (or those the config's ``serve`` lists) and tracks their status."""

    def __init__(self, config: Config, catalog: Catalog | None = None) -> None:
        self.config = config
        self.catalog = catalog or get_catalog()
        missing = [n for n in [*(config.models or {}), *(config.serve or ())] if n not in self.catalog.models]
        if missing:
            raise UnknownModelError(missing[0], self.catalog.models)
        self.names: list[str] = config.served_names(self.catalog.models)
        self._models = {name: self._new_served_model(self.catalog.models[name], config.model(name))
                        for name in self.names}
        self._lock = threading.Lock()
        self._manage_lock = threading.Lock()  # one operator load or unload at a time
        self._closing = threading.Event()
        self._first_attempts: dict[str, threading.Event] = {}
        server = config.server
        self._backoff = Backoff(server.load_retry_seconds, server.load_retry_max_seconds)
        #: Called with the served names when an operator's load adds a model (the HTTP server sizes
        #: its thread pool from them).
        self._served_listeners: list[Callable[[list[str]], None]] = []
        #: The other front processes' own metrics, when this registry serves one of several.
        self._peer_metrics: Callable[[], list[str]] | None = None

    def _new_served_model(self, entry: ModelEntry, config: ModelConfig) -> ServedModel:
        """How this registry serves one model: here, in this process (a registry whose models
        run elsewhere overrides it)."""
        return ServedModel(entry, config, self._start_loading)

    # ------------------------------------------------------------------ lookup
    def model(self, name: str) -> ServedModel:
        """The served model ``name``; UnknownModelError (listing the served ones) otherwise, which
        says so when the model is installed but the config does not serve it."""
        served = self._models.get(name) if isinstance(name, str) else None
        if served is None:
            if isinstance(name, str) and name in self.catalog.models:
                raise ModelNotServedError(name, self.names)
            raise UnknownModelError(str(name), self.names)
        return served

    def entry(self, name: str) -> ModelEntry:
        return self.model(name).entry

    def status(self, name: str) -> ModelStatus:
        return self.model(name).status

    def wrapper(self, name: str) -> ModelWrapper | None:
        """The loaded instance, or None while it is not ready."""
        return self.model(name).wrapper

    def not_ready(self) -> dict[str, ModelStatus]:
        """Models that should serve and do not (an unloaded model was taken out on purpose)."""
        return {name: m.status for name, m in self._models.items() if m.status.state not in (READY, UNLOADED)}

    # ------------------------------------------------------------------ loading
    def start(self, background: bool = True) -> None:
        """Load every non-lazy model, each in its own thread; ``background=False`` returns once
        each has been tried (failed models keep retrying in the background)."""
        configure_torch_threads(self.config.server.torch_threads)
        heap.HEAP_TRIMMER.slack_bytes = self.config.server.heap_trim_slack_mb << 20
        for served in self._models.values():
            if not served.config.lazy:
                self._start_loading(served)
        if not background:
            self.wait_until_loaded()

    def wait_until_loaded(self, timeout: float | None = None) -> bool:
        """Block until every model being loaded has been tried once (True), or ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for tried in list(self._first_attempts.values()):
            if not tried.wait(None if deadline is None else max(0.0, deadline - time.monotonic())):
                return False
        return True

    def _start_loading(self, served: ServedModel) -> None:
        with self._lock:
            if served.status.state != IDLE or self._closing.is_set():
                return
            served.set_status(ModelStatus(LOADING))
            tried = self._first_attempts[served.name] = threading.Event()
        threading.Thread(target=self._keep_loading, args=(served, tried), name=f"modeldeploy-load-{served.name}",
                         daemon=True).start()

    def _keep_loading(self, served: ServedModel, tried: threading.Event) -> None:
        """Attempt, and after a failure wait out the backoff and attempt again, until ready or closed."""
        attempt, generation = 0, served.generation
        while not self._closing.is_set() and served.generation == generation:
            attempt += 1
            served.set_status(replace(served.status, state=LOADING, attempts=attempt, retry_at=None))
            ready = self._attempt(served, attempt, generation)
            tried.set()
            if ready or served.generation != generation:
                return
            delay = self._backoff.delay(attempt)
            served.set_status(replace(served.status, retry_at=time.time() + delay))
            log.info("model %s: load attempt %d failed; next attempt in %.1fs", served.name, attempt, delay)
            if self._closing.wait(delay):
                return

    def _attempt(self, served: ServedModel, attempt: int, generation: int) -> bool:
        """One load, bounded by ``load_timeout``; True when the model is ready."""
        started = time.perf_counter()
        try:
            wrapper, demo, batcher = self._bounded_load(served.name, served.config, self.config.demo_fallback,
                                                        str(attempt))
        except PLUGIN_FAULTS as exc:  # any failure is this model's alone
            elapsed = time.perf_counter() - started
            reason = _load_failure_reason(served.name, served.config, exc)
            log.error("model %s failed to load: %s", served.name, reason,
                      exc_info=not isinstance(exc, ModelDeployError))
            fix = getattr(exc, "fix", None) or (f"fix models.{served.name} in the server's config (source, "
                                                "settings) if retrying does not help; the server log has the details")
            with self._lock:
                if served.generation == generation:
                    served.set_status(ModelStatus(FAILED, reason, elapsed, fix=fix, attempts=attempt))
            return False
        collector.freeze_survivors()  # what the model holds lives as long as it serves: out of the collector's walks
        with self._lock:
            # closed while loading: nothing may serve any more; an operator took over: theirs serves
            if self._closing.is_set() or served.generation != generation:
                batcher.close()
                return False
            served.batcher = batcher
            served.set_status(ModelStatus(READY, None, time.perf_counter() - started, demo, attempts=attempt))
        log.info("model %s ready in %.2fs (source %s, device %s)", served.name, served.status.load_seconds,
                 wrapper.source if demo else served.source, wrapper.device)
        return True

    def _bounded_load(self, name: str, model_config: ModelConfig, allow_demo: bool,
                      label: str) -> tuple[ModelWrapper, str | None, Batcher]:
        """One load with its batcher, abandoned after ``load_timeout`` (AttemptTimeoutError): a late
        result is closed, and the abandoned build gives up its turn."""
        return call_with_timeout(
            lambda: self._load(name, model_config, allow_demo), model_config.load_timeout,
            name=f"modeldeploy-load-{name}-{label}", discard=lambda late: late[2].close(),
            on_abandon=lambda thread: loading.BUILD_TURN.give_up(thread.ident))

    def _load(self, name: str, model_config: ModelConfig,
              allow_demo: bool) -> tuple[ModelWrapper, str | None, Batcher]:
        wrapper, demo = self._load_wrapper(name, model_config, allow_demo)
        return wrapper, demo, Batcher(wrapper, model_config.batch, name).start()

    def _load_wrapper(self, name: str, model_config: ModelConfig,
                      allow_demo: bool) -> tuple[ModelWrapper, str | None]:
        """The model's wrapper, and why it is its task's demo model instead, if that is allowed."""
        options = dict(sha256=model_config.sha256, trust_unsigned=model_config.trust_unsigned,
                       cache_dir=self.config.cache_dir, catalog=self.catalog)
        arguments = (name, model_config.source, model_config.device, model_config.settings)
        if allow_demo:
            return loading.load_or_demo(*arguments, **options)
        return loading.load(*arguments, **options), None

    # ------------------------------------------------------------------ run-time management
    def when_served_changes(self, listener: Callable[[list[str]], None]) -> None:
        """Call ``listener(names)`` each time a model starts being served at run time."""
        self._served_listeners.append(listener)

    def _installed(self, name: str) -> ModelEntry:
        """The catalog entry of ``name``, looked for among plugins pip-installed since start-up too;
        UnknownModelError lists what is installed."""
        if name not in self.catalog.models:
            self.refresh_catalog()
        return self.catalog.entry(name)

    def _add_served(self, entry: ModelEntry) -> ServedModel:
        """Serve ``entry`` from now on (an operator's load of a model the config left out); the
        caller announces it (:meth:`_served_changed`) once outside its locks."""
        served = self._models[entry.name] = self._new_served_model(entry, self.config.model(entry.name))
        self.names = [*self.names, entry.name]
        return served

    def _served_changed(self) -> None:
        for listener in self._served_listeners:
            listener(list(self.names))

    def refresh_catalog(self) -> Catalog:
        """Discover plugins again, so one pip-installed since start-up can be loaded; the models
        already served keep the classes they were loaded with (a new version of an imported
        plugin's code needs a restart)."""
        importlib.invalidate_caches()
        fresh = get_catalog(refresh=True)
        with self._lock:
            self.catalog = replace(fresh, models={**fresh.models, **self.catalog.models})
        return self.catalog

    def load_model(self, name: str, source: str | None = None, sha256: str | None = None) -> ModelStatus:
        """Load ``name`` (from ``source``, else its configured one) and swap it in once ready.

        Works for a served model (a reload: the version serving keeps answering until the swap,
        then finishes what it accepted) and for an installed one the config did not serve. An
        operator's load takes over from automatic retries, and never falls back to demo weights:
        a failure raises, and whatever served before keeps serving.
        """
        entry = self._installed(name)
        with self._manage_lock:
            with self._lock:
                if self._closing.is_set():
                    raise ModelNotReadyError("the server is shutting down", retry_after=5)
                served = self._models.get(name)
                added = served is None
                if served is None:
                    served = self._add_served(entry)
                served.generation += 1
                config = served.config if source is None else replace(served.config, source=source, sha256=sha256)
                if served.batcher is None:
                    served.set_status(ModelStatus(LOADING, attempts=served.status.attempts + 1))
            if added:
                self._served_changed()
            started = time.perf_counter()
            try:
                wrapper, _, batcher = self._bounded_load(name, config, allow_demo=False, label="operator")
            except PLUGIN_FAULTS as exc:
                reason = self._operator_load_failed(served, config, exc, time.perf_counter() - started)
                if isinstance(exc, ModelDeployError):
                    raise
                raise ModelLoadError(reason) from exc
            collector.freeze_survivors()
            with self._lock:
                if self._closing.is_set():
                    batcher.close()
                    raise ModelNotReadyError("the server is shutting down", retry_after=5)
                retiring, served.batcher, served.config = [served.batcher], batcher, config
                served.set_status(ModelStatus(READY, None, time.perf_counter() - started,
                                              attempts=served.status.attempts))
        log.info("model %s: version from %s swapped in by an operator (device %s)", name,
                 config.source or entry.wrapper_class.default_source, wrapper.device)
        if retiring[0] is not None:
            self._retire_in_background(retiring, config.batch.timeout)
        return served.status

    def _operator_load_failed(self, served: ServedModel, config: ModelConfig, exc: BaseException,
                              elapsed: float) -> str:
        reason = _load_failure_reason(served.name, config, exc)
        log.error("model %s: operator load from %s failed: %s", served.name, config.source, reason,
                  exc_info=not isinstance(exc, ModelDeployError))
        with self._lock:
            if served.batcher is None:  # nothing serves: say why; an operator's next load tries again
                served.set_status(ModelStatus(FAILED, reason, elapsed, attempts=served.status.attempts,
                                              fix="load it again with a source that works"))
        return reason

    def unload_model(self, name: str) -> None:
        """Stop serving ``name``: new requests get 503 'unloaded' at once; requests it already
        accepted are answered (up to the model's request timeout) before this returns. A model
        installed but not served is already unloaded."""
        if name not in self._models:
            self.catalog.entry(name)  # unknown: 404
            return
        with self._manage_lock:
            with self._lock:
                served = self._models[name]
                served.generation += 1
                retired, served.batcher = served.batcher, None
                served.set_status(ModelStatus(UNLOADED, attempts=served.status.attempts))
            if retired is not None:
                wrapper = weakref.ref(retired.wrapper)
                retired.retire(served.config.batch.timeout)
                del retired
                collector.free_retired(wrapper)
        log.info("model %s unloaded by an operator", name)

    @staticmethod
    def _retire_in_background(retiring: list[Batcher], timeout: float) -> None:
        """Retire the batcher in ``retiring``, the list holding the only reference to it, on a thread
        of its own: the caller's frame must not hold the old version while that thread frees it (it
        did, in a local, when the thread got there first; frozen again, its cycles were never freed)."""
        name, wrapper = retiring[0].name, weakref.ref(retiring[0].wrapper)

        def retire() -> None:
            retiring.pop().retire(timeout)  # the last reference to the old version, unless it is in a cycle
            collector.free_retired(wrapper)

        threading.Thread(target=retire, name=f"modeldeploy-retire-{name}", daemon=True).start()

    # ------------------------------------------------------------------ serving
    def predict(self, name: str, data: str | Sequence[str]) -> Any:
        """Validate ``data`` and run it through the named model's batcher (one result or a list,
        like ``ModelWrapper.predict``)."""
        served = self.model(name)
        texts, single = normalize_texts(data)
        results = served.predict_texts(texts)
        return results[0] if single else results

    def model_metric_texts(self) -> list[str]:
        """Prometheus expositions of the processes serving the models, when that is not this one
        (here: none; the models record into this process's metrics)."""
        return []

    def share_front_metrics(self, peers: Callable[[], list[str]]) -> None:
        """Serve as one of several front processes (``server.fronts``): ``peers()`` gives the others'
        own Prometheus expositions, whose request counts and latencies add to this front's."""
        self._peer_metrics = peers

    def peer_metric_texts(self) -> list[str]:
        return self._peer_metrics() if self._peer_metrics is not None else []

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop loading and retrying, and every model's inference thread (queued requests fail as
        'shutting down'); waits up to ``timeout`` seconds for each running round to end."""
        with self._lock:
            self._closing.set()
        for served in self._models.values():
            if served.batcher is not None:
                served.batcher.close(timeout)


def _changing_versions(name: str) -> ModelNotReadyError:
    return ModelNotReadyError(f"model {name!r} is changing versions; retry shortly", retry_after=1)


def _load_failure_reason(name: str, model_config: ModelConfig, exc: BaseException) -> str:
    """Why a load failed, as users read it; a timed-out attempt names the setting that bounds it."""
    if isinstance(exc, AttemptTimeoutError):
        return (f"loading did not finish within models.{name}.load_timeout ({model_config.load_timeout:g} s); "
                "that attempt was abandoned")
    return failure_reason(exc)
