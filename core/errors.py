"""The project's own exception hierarchy.

Every error a user can cause derives from :class:`ModelDeployError`, and input errors also
derive from the matching built-in (``ValueError``/``TypeError``/``LookupError``) so callers can
catch either the project's type or the conventional one.
"""

from __future__ import annotations

from collections.abc import Iterable


class ModelDeployError(Exception):
    """Base class of every error modeldeploy raises on purpose."""

    #: What the user can do about it, where the message does not already say (the homepage shows it).
    fix: str | None = None


class InvalidInputError(ModelDeployError, ValueError):
    """The data given to ``predict`` has the right type but an unusable value."""


class InputTypeError(ModelDeployError, TypeError):
    """The data given to ``predict`` has the wrong type."""


class UnknownModelError(ModelDeployError, LookupError):
    """No installed plugin registers a model under the requested name."""

    def __init__(self, name: str, available: Iterable[str]):
        self.name = name
        self.available = sorted(available)
        listed = ", ".join(self.available) if self.available else "none are installed"
        super().__init__(f"unknown model {name!r}; available models: {listed}")

    def __str__(self) -> str:  # LookupError would otherwise repr() the message
        return self.args[0]


class ModelNotServedError(UnknownModelError):
    """The model is installed, but the server's config does not serve it (HTTP 404 all the same)."""

    def __init__(self, name: str, served: Iterable[str]):
        super().__init__(name, served)
        listed = ", ".join(self.available) if self.available else "none"
        self.args = (f"model {name!r} is installed but not served here (add it to the config's 'serve' list to "
                     f"serve it); available models: {listed}",)


class ConfigError(ModelDeployError, ValueError):
    """config.yaml (or the equivalent dict) is invalid; the message names the key and the fix."""


class ModelLoadError(ModelDeployError, RuntimeError):
    """A model's weights or tokenizer could not be loaded from its source."""

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.fix = fix


class PluginError(ModelDeployError, RuntimeError):
    """A plugin registered something that is not a usable ModelWrapper."""


class PluginContractError(PluginError):
    """A plugin's wrapper broke the ModelWrapper contract at run time (e.g. one output per input);
    a bug in that plugin, not in the request, so it is never retried item by item."""


class ModelNotReadyError(ModelDeployError):
    """The model exists but is still loading (or failed to load); try again later."""

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(message)
        self.retry_after = retry_after


class BatcherRetiredError(ModelNotReadyError):
    """The model version a request reached was swapped out or unloaded before taking it; the
    registry sends the request on to the version now serving, if there is one."""


class ModelUnloadedError(ModelNotReadyError):
    """An operator unloaded the model (``POST /v2/repository/models/NAME/unload``); it serves again
    once an operator loads it. HTTP 503, like any model that is not ready."""

    def __init__(self, name: str):
        super().__init__(f"model {name!r} was unloaded by an operator; it serves again once loaded "
                         f"(POST /v2/repository/models/{name}/load)", retry_after=60)


class OverloadedError(ModelDeployError):
    """The model's queue is full; the caller should back off (HTTP 503 with Retry-After)."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class UnsupportedOperationError(ModelDeployError):
    """What was asked exists, but not where this server runs it (HTTP 501), e.g. operators' model
    loads on an engine that manages its own replicas."""


class PredictionTimeoutError(ModelDeployError, TimeoutError):
    """The request waited longer than its timeout; its work was dropped (HTTP 504)."""


class RequestCancelledError(ModelDeployError):
    """The caller went away (the HTTP client closed its connection) before its answer was computed;
    its items left the queue unanswered. Over HTTP nobody reads the answer: the access log shows 499."""


class AttemptTimeoutError(ModelDeployError, TimeoutError):
    """A call did not finish within its deadline and was abandoned (see ``modeldeploy.retrying``)."""


class PredictionError(ModelDeployError):
    """The model raised while computing this item (HTTP 500); the companions in its batch are unaffected."""


class StoreError(ModelDeployError):
    """A model store or artifact problem: bad URI, missing object, unusable artifact."""


class StoreUnavailableError(StoreError):
    """The store could not be reached (after retries); a verified cached copy may stand in."""

    fix = "check that the store is reachable from here (bucket name, credentials, network), then restart"


class ArtifactConflictError(StoreError):
    """A create-only write found the object already there (e.g. two pushes in the same instant)."""


class ArtifactVerificationError(StoreError):
    """An artifact failed verification (or could not be verified) and was not loaded."""


def failure_reason(exc: BaseException) -> str:
    """A failure as users read it: our own errors by their message, others with their type too."""
    return str(exc) if isinstance(exc, ModelDeployError) else f"{type(exc).__name__}: {exc}"
