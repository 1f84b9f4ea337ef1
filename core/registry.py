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
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from . import heap, loading, metrics
from .batching import Batcher, configure_torch_threads
from .config import Config, ModelConfig
from .errors import (
    AttemptTimeoutError,
    ModelDeployError,
    ModelNotReadyError,
    ModelNotServedError,
    UnknownModelError,
    failure_reason,
)
from .inputs import normalize_texts
from .plugins import PLUGIN_FAULTS, Catalog, ModelEntry, get_catalog
from .retrying import Backoff, call_with_timeout
from .wrapper import ModelWrapper

log = logging.getLogger(__name__)

IDLE, LOADING, READY, FAILED = "idle", "loading", "ready", "failed"


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
        self.status = ModelStatus(IDLE)
        self.batcher: Batcher | None = None
        self._start_loading = start_loading
        self._record()

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

    def set_status(self, status: ModelStatus) -> None:
        self.status = status
        self._record()

    def ready_batcher(self) -> Batcher:
        """The batcher of a ready model, or ModelNotReadyError saying why not (an idle, lazy
        model starts loading)."""
        state = self.status.state
        if state == READY and self.batcher is not None:
            return self.batcher
        if state == IDLE:
            self._start_loading(self)
            raise ModelNotReadyError(f"model {self.name!r} is loading (lazy start); retry shortly")
        if state == LOADING:
            raise ModelNotReadyError(f"model {self.name!r} is still loading; retry shortly")
        retry_in = self.status.retry_in()
        if retry_in is None:
            raise ModelNotReadyError(f"model {self.name!r} failed to load: {self.status.reason}", retry_after=60)
        raise ModelNotReadyError(f"model {self.name!r} failed to load: {self.status.reason} (next attempt in "
                                 f"{math.ceil(retry_in)} s)", retry_after=max(1, math.ceil(retry_in)))

    def predict_texts(self, texts: Sequence[str]) -> list[Any]:
        """Results for validated texts, in order: each prepared once, then batched."""
        batcher = self.ready_batcher()
        return batcher.submit(batcher.wrapper.prepare_texts(texts))

    def _record(self) -> None:
        for state in (IDLE, LOADING, READY, FAILED):
            metrics.MODEL_STATE.labels(self.name, state).set(1 if self.status.state == state else 0)
        metrics.MODEL_READY.labels(self.name).set(1 if self.status.state == READY else 0)
        if self.status.load_seconds is not None:
            metrics.MODEL_LOAD_SECONDS.labels(self.name).set(self.status.load_seconds)


class Registry:
    """Serves every installed model (or those the config's ``serve`` lists) and tracks their status."""

    def __init__(self, config: Config, catalog: Catalog | None = None) -> None:
        self.config = config
        self.catalog = catalog or get_catalog()
        missing = [n for n in [*(config.models or {}), *(config.serve or ())] if n not in self.catalog.models]
        if missing:
            raise UnknownModelError(missing[0], self.catalog.models)
        self.names: list[str] = config.served_names(self.catalog.models)
        self._models = {name: ServedModel(self.catalog.models[name], config.model(name), self._start_loading)
                        for name in self.names}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._first_attempts: dict[str, threading.Event] = {}
        server = config.server
        self._backoff = Backoff(server.load_retry_seconds, server.load_retry_max_seconds)

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
        return {name: m.status for name, m in self._models.items() if m.status.state != READY}

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
        attempt = 0
        while not self._closing.is_set():
            attempt += 1
            served.set_status(replace(served.status, state=LOADING, attempts=attempt, retry_at=None))
            ready = self._attempt(served, attempt)
            tried.set()
            if ready:
                return
            delay = self._backoff.delay(attempt)
            served.set_status(replace(served.status, retry_at=time.time() + delay))
            log.info("model %s: load attempt %d failed; next attempt in %.1fs", served.name, attempt, delay)
            if self._closing.wait(delay):
                return

    def _attempt(self, served: ServedModel, attempt: int) -> bool:
        """One load, bounded by ``load_timeout``; True when the model is ready."""
        started = time.perf_counter()
        timeout = served.config.load_timeout
        try:
            wrapper, demo, batcher = call_with_timeout(
                lambda: self._load(served), timeout, name=f"modeldeploy-load-{served.name}-{attempt}",
                discard=lambda late: late[2].close(),
                on_abandon=lambda thread: loading.BUILD_TURN.give_up(thread.ident))
        except PLUGIN_FAULTS as exc:  # any failure is this model's alone
            elapsed = time.perf_counter() - started
            if isinstance(exc, AttemptTimeoutError):
                reason = (f"loading did not finish within models.{served.name}.load_timeout ({timeout:g} s); "
                          "that attempt was abandoned")
            else:
                reason = failure_reason(exc)
            log.error("model %s failed to load: %s", served.name, reason,
                      exc_info=not isinstance(exc, ModelDeployError))
            fix = getattr(exc, "fix", None) or (f"fix models.{served.name} in the server's config (source, "
                                                "settings) if retrying does not help; the server log has the details")
            served.set_status(ModelStatus(FAILED, reason, elapsed, fix=fix, attempts=attempt))
            return False
        with self._lock:
            if self._closing.is_set():  # closed while loading: nothing may serve any more
                batcher.close()
                return False
            served.batcher = batcher
            served.set_status(ModelStatus(READY, None, time.perf_counter() - started, demo, attempts=attempt))
        log.info("model %s ready in %.2fs (source %s, device %s)", served.name, served.status.load_seconds,
                 wrapper.source if demo else served.source, wrapper.device)
        return True

    def _load(self, served: ServedModel) -> tuple[ModelWrapper, str | None, Batcher]:
        wrapper, demo = self._load_wrapper(served)
        return wrapper, demo, Batcher(wrapper, served.config.batch, served.name).start()

    def _load_wrapper(self, served: ServedModel) -> tuple[ModelWrapper, str | None]:
        """The model's wrapper, and why it is its task's demo model instead, if the config allows one."""
        model_config = served.config
        options = dict(sha256=model_config.sha256, trust_unsigned=model_config.trust_unsigned,
                       cache_dir=self.config.cache_dir, catalog=self.catalog)
        arguments = (served.name, model_config.source, model_config.device, model_config.settings)
        if self.config.demo_fallback:
            return loading.load_or_demo(*arguments, **options)
        return loading.load(*arguments, **options), None

    # ------------------------------------------------------------------ serving
    def predict(self, name: str, data: str | Sequence[str]) -> Any:
        """Validate ``data`` and run it through the named model's batcher (one result or a list,
        like ``ModelWrapper.predict``)."""
        served = self.model(name)
        texts, single = normalize_texts(data)
        results = served.predict_texts(texts)
        return results[0] if single else results

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop loading and retrying, and every model's inference thread (queued requests fail as
        'shutting down'); waits up to ``timeout`` seconds for each running round to end."""
        with self._lock:
            self._closing.set()
        for served in self._models.values():
            if served.batcher is not None:
                served.batcher.close(timeout)

