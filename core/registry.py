"""The registry: the served models by name, each with its status, wrapper and batcher.

The app, the CLI and health checks read it; they never touch torch or a plugin directly. Models
load in one background thread at start-up (the server answers while they load) or, when the
config says ``lazy: true``, on first use. A model that fails to load is ``failed`` with its reason
and never stops the others. Every model loads through :func:`modeldeploy.loading.load`, the same
path as ``modeldeploy.load()``.

A request looks its model up once (:meth:`Registry.model`, unknown names raise) and hands the
:class:`ServedModel` its validated texts (:meth:`ServedModel.predict_texts`), which are prepared
once and queued on the model's batcher.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import loading, metrics
from .batching import Batcher, configure_torch_threads
from .config import Config, ModelConfig
from .errors import ModelDeployError, ModelNotReadyError, ModelNotServedError, UnknownModelError, failure_reason
from .inputs import normalize_texts
from .plugins import Catalog, ModelEntry, get_catalog
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

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "fix": self.fix, "load_seconds": self.load_seconds,
                "demo": self.demo}


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
        raise ModelNotReadyError(f"model {self.name!r} failed to load: {self.status.reason}", retry_after=60)

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
        self._models = {name: ServedModel(self.catalog.models[name], config.model(name), self._start_lazy_load)
                        for name in self.names}
        self._lock = threading.Lock()
        self._loader: threading.Thread | None = None

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
        """Load every non-lazy model, in a background thread unless ``background=False``."""
        configure_torch_threads(self.config.server.torch_threads)
        eager = [m for m in self._models.values() if not m.config.lazy]
        with self._lock:
            for served in eager:
                if served.status.state == IDLE:
                    served.set_status(ModelStatus(LOADING))
        if not background:
            for served in eager:
                self._load(served)
            return
        self._loader = threading.Thread(target=lambda: [self._load(m) for m in eager],
                                        name="modeldeploy-loader", daemon=True)
        self._loader.start()

    def wait_until_loaded(self, timeout: float | None = None) -> bool:
        """Block until the start-up loader has finished (True) or ``timeout`` passed (False)."""
        if self._loader is not None:
            self._loader.join(timeout)
            return not self._loader.is_alive()
        return True

    def _load(self, served: ServedModel) -> None:
        started = time.perf_counter()
        try:
            wrapper, demo = self._load_wrapper(served)
            batcher = Batcher(wrapper, served.config.batch, served.name).start()
        except Exception as exc:  # any failure is this model's alone
            reason = failure_reason(exc)
            log.error("model %s failed to load: %s", served.name, reason,
                      exc_info=not isinstance(exc, ModelDeployError))
            fix = getattr(exc, "fix", None) or (f"fix models.{served.name} in the server's config (source, "
                                                "settings) and restart; the server log has the details")
            served.set_status(ModelStatus(FAILED, reason, time.perf_counter() - started, fix=fix))
            return
        elapsed = time.perf_counter() - started
        served.batcher = batcher
        served.set_status(ModelStatus(READY, None, elapsed, demo))
        log.info("model %s ready in %.2fs (source %s, device %s)", served.name, elapsed,
                 wrapper.source if demo else served.source, wrapper.device)

    def _load_wrapper(self, served: ServedModel) -> tuple[ModelWrapper, str | None]:
        """The model's wrapper, and why it is its task's demo model instead, if the config allows one."""
        model_config = served.config
        options = dict(sha256=model_config.sha256, trust_unsigned=model_config.trust_unsigned,
                       cache_dir=self.config.cache_dir, catalog=self.catalog)
        arguments = (served.name, model_config.source, model_config.device, model_config.settings)
        if self.config.demo_fallback:
            return loading.load_or_demo(*arguments, **options)
        return loading.load(*arguments, **options), None

    def _start_lazy_load(self, served: ServedModel) -> None:
        with self._lock:
            if served.status.state != IDLE:
                return
            served.set_status(ModelStatus(LOADING))
        threading.Thread(target=self._load, args=(served,), name=f"modeldeploy-load-{served.name}",
                         daemon=True).start()

    # ------------------------------------------------------------------ serving
    def predict(self, name: str, data: str | Sequence[str]) -> Any:
        """Validate ``data`` and run it through the named model's batcher (one result or a list,
        like ``ModelWrapper.predict``)."""
        served = self.model(name)
        texts, single = normalize_texts(data)
        results = served.predict_texts(texts)
        return results[0] if single else results

    def close(self) -> None:
        """Stop every model's inference thread (queued requests fail as 'shutting down')."""
        for served in self._models.values():
            if served.batcher is not None:
                served.batcher.close()

