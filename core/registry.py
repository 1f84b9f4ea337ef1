"""The registry: model name -> wrapper class -> loaded instance, with a status per model.

The app, the CLI and health checks read it; they never touch torch or a plugin directly. Models
load in one background thread at start-up (the server answers while they load) or, when the
config says ``lazy: true``, on first use. A model that fails to load is ``failed`` with its reason
and never stops the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import metrics, store
from .batching import Batcher, configure_torch_threads
from .config import Config, ModelConfig
from .errors import ModelDeployError, ModelNotReadyError, UnknownModelError
from .plugins import Catalog, ModelEntry, get_catalog
from .wrapper import ModelWrapper

log = logging.getLogger(__name__)

IDLE, LOADING, READY, FAILED = "idle", "loading", "ready", "failed"


@dataclass(frozen=True)
class ModelStatus:
    """What a model is doing; ``reason`` is set when it failed."""

    state: str
    reason: str | None = None
    load_seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "load_seconds": self.load_seconds}


class Registry:
    """Serves the models a config names (or every installed one) and tracks their status."""

    def __init__(self, config: Config, catalog: Catalog | None = None) -> None:
        self.config = config
        self.catalog = catalog or get_catalog()
        missing = [n for n in (config.models or {}) if n not in self.catalog.models]
        if missing:
            raise UnknownModelError(missing[0], self.catalog.models)
        self.names: list[str] = config.served_names(self.catalog.models)
        self._wrappers: dict[str, ModelWrapper] = {}
        self._batchers: dict[str, Batcher] = {}
        self._status: dict[str, ModelStatus] = {name: ModelStatus(IDLE) for name in self.names}
        self._lock = threading.Lock()
        self._loader: threading.Thread | None = None
        for name in self.names:
            self._record(name, self._status[name])

    # ------------------------------------------------------------------ lookup
    def entry(self, name: str) -> ModelEntry:
        if name not in self._status:
            raise UnknownModelError(str(name), self.names)
        return self.catalog.models[name]

    def model_config(self, name: str) -> ModelConfig:
        return self.config.model(name)

    def source(self, name: str) -> str:
        return self.model_config(name).source or self.entry(name).wrapper_class.default_source

    def status(self, name: str) -> ModelStatus:
        self.entry(name)
        return self._status[name]

    def wrapper(self, name: str) -> ModelWrapper | None:
        """The loaded instance, or None while it is not ready."""
        return self._wrappers.get(name)

    def not_ready(self) -> dict[str, ModelStatus]:
        return {n: s for n, s in self._status.items() if s.state != READY}

    # ------------------------------------------------------------------ loading
    def start(self, background: bool = True) -> None:
        """Load every non-lazy model, in a background thread unless ``background=False``."""
        configure_torch_threads(self.config.server.torch_threads)
        eager = [n for n in self.names if not self.model_config(n).lazy]
        with self._lock:
            for name in eager:
                if self._status[name].state == IDLE:
                    self._set_status(name, ModelStatus(LOADING))
        if not background:
            for name in eager:
                self._load(name)
            return
        self._loader = threading.Thread(target=lambda: [self._load(n) for n in eager],
                                        name="modeldeploy-loader", daemon=True)
        self._loader.start()

    def wait_until_loaded(self, timeout: float | None = None) -> bool:
        """Block until the start-up loader has finished (True) or ``timeout`` passed (False)."""
        if self._loader is not None:
            self._loader.join(timeout)
            return not self._loader.is_alive()
        return True

    def instantiate(self, name: str) -> ModelWrapper:
        """Build and load the wrapper for ``name`` from its configured source (a store artifact or not)."""
        settings = self.model_config(name)
        if store.is_artifact_source(settings.source):
            return store.load_model(self.entry(name), settings, self.config.cache_dir)
        wrapper = self.entry(name).wrapper_class(
            source=self.source(name), device=settings.device, settings=settings.settings
        )
        return wrapper.ensure_loaded()

    def _load(self, name: str) -> None:
        started = time.perf_counter()
        try:
            wrapper = self.instantiate(name)
        except Exception as exc:  # any failure is this model's alone
            reason = str(exc) if isinstance(exc, ModelDeployError) else f"{type(exc).__name__}: {exc}"
            log.error("model %s failed to load: %s", name, reason, exc_info=not isinstance(exc, ModelDeployError))
            self._set_status(name, ModelStatus(FAILED, reason, time.perf_counter() - started))
            return
        self._batchers[name] = Batcher(wrapper, self.model_config(name).batch, name).start()
        elapsed = time.perf_counter() - started
        self._wrappers[name] = wrapper
        self._set_status(name, ModelStatus(READY, None, elapsed))
        log.info("model %s ready in %.2fs (source %s, device %s)", name, elapsed, wrapper.source, wrapper.device)

    def _set_status(self, name: str, status: ModelStatus) -> None:
        self._status[name] = status
        self._record(name, status)

    @staticmethod
    def _record(name: str, status: ModelStatus) -> None:
        for state in (IDLE, LOADING, READY, FAILED):
            metrics.MODEL_STATE.labels(name, state).set(1 if status.state == state else 0)
        metrics.MODEL_READY.labels(name).set(1 if status.state == READY else 0)
        if status.load_seconds is not None:
            metrics.MODEL_LOAD_SECONDS.labels(name).set(status.load_seconds)

    def _start_lazy_load(self, name: str) -> None:
        with self._lock:
            if self._status[name].state != IDLE:
                return
            self._set_status(name, ModelStatus(LOADING))
        threading.Thread(target=self._load, args=(name,), name=f"modeldeploy-load-{name}", daemon=True).start()

    # ------------------------------------------------------------------ serving
    def ready_wrapper(self, name: str) -> ModelWrapper:
        """The loaded wrapper, or ModelNotReadyError saying why not (a lazy model starts loading)."""
        status = self.status(name)
        if status.state == READY:
            return self._wrappers[name]
        if status.state == IDLE:
            self._start_lazy_load(name)
            raise ModelNotReadyError(f"model {name!r} is loading (lazy start); retry shortly")
        if status.state == LOADING:
            raise ModelNotReadyError(f"model {name!r} is still loading; retry shortly")
        raise ModelNotReadyError(f"model {name!r} failed to load: {status.reason}", retry_after=60)

    def predict(self, name: str, data: str | Sequence[str]) -> Any:
        """Run ``data`` through the named model's batcher (one result or a list, like ``ModelWrapper.predict``)."""
        self.ready_wrapper(name)
        return self._batchers[name].predict(data)

    def close(self) -> None:
        """Stop every model's inference thread (queued requests fail as 'shutting down')."""
        for batcher in list(self._batchers.values()):
            batcher.close()
