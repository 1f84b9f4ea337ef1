"""A model served by a Ray Serve deployment, reached through its handle.

Ray's own failures become the core's errors, so the app answers them like any other:
back-pressure (every replica busy and ``max_queued_requests`` waiting) is 503 with
``Retry-After``; a replica that died while answering is 503 (Ray starts another); no answer
within the model's timeout is 504; anything else a replica raised is 500 with its message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RequestCancelledError
from ray.serve.handle import DeploymentHandle

from ..errors import ModelNotReadyError, OverloadedError, PredictionError, PredictionTimeoutError
from ..remote import RemoteFailure, ReplicaReport

log = logging.getLogger(__name__)

#: Seconds a status report may take; past it the model counts as not answering.
REPORT_TIMEOUT = 5.0
#: Seconds beyond the model's own timeout (its replica answers 504 itself) before the caller gives up.
TIMEOUT_MARGIN = 5.0


class RayModelClient:
    """Sends validated texts to a model deployment and maps Ray's failures to the core's errors."""

    def __init__(self, name: str, handle: DeploymentHandle, timeout: float, max_queued: int) -> None:
        self.name = name
        self._handle = handle
        self._timeout = timeout + TIMEOUT_MARGIN
        self._max_queued = max_queued

    def predict(self, texts: Sequence[str], timeout: float | None = None) -> list[Any]:
        waited = self._timeout if timeout is None else min(self._timeout, timeout + TIMEOUT_MARGIN)
        reply = self._call("predict", list(texts), timeout, timeout=waited)
        if isinstance(reply, RemoteFailure):
            raise reply.error()
        return reply

    def report(self) -> ReplicaReport:
        return self._call("report", timeout=REPORT_TIMEOUT)

    def metric_texts(self) -> list[str]:
        """Every running replica's metrics; a replica that does not answer in time is left out."""
        try:
            replies = self._handle.broadcast("metrics").results(timeout_s=REPORT_TIMEOUT, return_exceptions=True)
        except TimeoutError:
            log.warning("model %s: no replica sent its metrics within %g s", self.name, REPORT_TIMEOUT)
            return []
        return [reply for reply in replies if isinstance(reply, str)]

    def _call(self, method: str, *args: Any, timeout: float) -> Any:
        response = getattr(self._handle, method).remote(*args)
        try:
            return response.result(timeout_s=timeout)
        except BackPressureError:
            raise OverloadedError(f"model {self.name!r} is overloaded: every replica is busy and "
                                  f"{self._max_queued} requests wait already (models.{self.name}."
                                  "max_queued_requests); retry later", retry_after=1) from None
        except (GetTimeoutError, TimeoutError):
            response.cancel()
            raise PredictionTimeoutError(f"model {self.name!r} did not answer within {timeout:g} s") from None
        except (RayActorError, DeploymentUnavailableError, RequestCancelledError) as exc:
            raise ModelNotReadyError(f"a replica of model {self.name!r} stopped while answering "
                                     f"({type(exc).__name__}); Ray starts another, retry shortly",
                                     retry_after=1) from None
        except RayTaskError as exc:
            cause = exc.cause if exc.cause is not None else exc
            raise PredictionError(f"model {self.name!r}: its replica failed: {type(cause).__name__}: {cause}") \
                from None
