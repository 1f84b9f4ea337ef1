"""``wait_for``: poll until something happens, with a generous bound (never a timing assertion).
``tests/`` is on ``sys.path``, so ``from waiting import wait_for`` works from any test module."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 30.0, what: str = "the condition",
             interval: float = 0.02) -> T:
    """The first true value ``condition()`` returns; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
