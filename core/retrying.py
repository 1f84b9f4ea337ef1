"""Backoff between attempts, and a call that may not take longer than a deadline.

Model loading uses both: a load that fails is tried again later (a bucket briefly down, a folder
mounted late), and a load that hangs (an unresponsive bucket, a stuck mount) must not hold a model
forever. Python cannot kill a thread, so a call past its deadline is *abandoned*: the caller gets
:class:`~modeldeploy.errors.AttemptTimeoutError` at once, and whatever the call returns later is
handed to a clean-up function instead of being used.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .errors import AttemptTimeoutError

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: ``initial * 2**(attempt-1)``, capped at ``maximum``, each
    delay drawn within ``±jitter`` of that so servers that failed together do not retry together."""

    initial: float
    maximum: float
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.initial * 2 ** min(attempt - 1, 62), self.maximum)
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1 + spread))


class _Attempt(Generic[T]):
    """One call in its own thread; decides, under a lock, whether its result is used or abandoned."""

    def __init__(self, call: Callable[[], T], discard: Callable[[T], None]) -> None:
        self._call, self._discard = call, discard
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._abandoned = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            result = self._call()
        except BaseException as exc:  # reported to the waiting caller, who decides what it means
            with self._lock:
                self.error = exc
                self._done.set()
            return
        with self._lock:
            abandoned = self._abandoned
            if not abandoned:
                self.result = result
                self._done.set()
        if abandoned:
            self._discard(result)

    def wait(self, timeout: float | None) -> bool:
        """True once the call finished; False (and abandoned for good) if ``timeout`` passed first."""
        self._done.wait(timeout)
        with self._lock:
            if self._done.is_set():
                return True
            self._abandoned = True
        return False


def call_with_timeout(call: Callable[[], T], timeout: float | None, *, name: str,
                      discard: Callable[[T], None] = lambda result: None,
                      on_abandon: Callable[[threading.Thread], None] = lambda thread: None) -> T:
    """``call()`` in a daemon thread named ``name``; its result, its exception, or
    AttemptTimeoutError after ``timeout`` seconds (``on_abandon`` then gets the thread, and its
    late result goes to ``discard``)."""
    attempt: _Attempt[T] = _Attempt(call, discard)
    thread = threading.Thread(target=attempt.run, name=name, daemon=True)
    thread.start()
    if not attempt.wait(timeout):
        on_abandon(thread)
        raise AttemptTimeoutError(f"did not finish within {timeout:g} s")
    if attempt.error is not None:
        raise attempt.error
    return attempt.result  # type: ignore[return-value]
