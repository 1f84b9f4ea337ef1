"""A caller's way to say it no longer wants an answer.

An HTTP client that hangs up while its request waits in a model's queue wants nothing computed:
the items would take a place in the queue (and in admission's count) and a slot in a forward pass
for an answer nobody reads. The serving front creates one :class:`Cancellation` per request and
cancels it when the connection closes; the batcher that queued the request's items registers a
callback that takes them out. The object knows nothing of either side.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Cancellation:
    """Cancelled at most once; callbacks run on the thread that cancels (or at once, on the
    registering thread, when it was cancelled already)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _run(callback)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when cancelled; returns a function that unregisters it."""
        with self._lock:
            if not self._cancelled:
                self._callbacks.append(callback)
                return lambda: self._discard(callback)
        _run(callback)
        return lambda: None

    def _discard(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)


def _run(callback: Callable[[], None]) -> None:
    """A failing callback must not stop the others, nor the thread that cancels (the server loop)."""
    try:
        callback()
    except Exception:
        log.exception("a cancellation callback failed")
