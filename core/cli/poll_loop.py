"""waitress's event loop without its walk over every connection on every turn.

wasyncore's poll loop asks each connection ``readable()`` and ``writable()`` and registers it with
a new poll object on every turn: with 512 connections that is a millisecond or more of Python,
holding the GIL the model threads need, and a retry storm turns the loop hundreds of times a
second. :class:`PollLoop` keeps one poll object across turns and asks again only the connections
whose answers may have changed since:

- those the loop handled an event for (it read, wrote, accepted or closed them);
- those a task thread touched: every trigger pull from a task thread names the connection it was
  serving (:meth:`PollLoop.touch_serving`), after whatever it changed (buffered output, a finished
  request);
- those :meth:`PollLoop.touch` names (a new connection, a held response that fell due);
- all of them on the first turn and after :meth:`PollLoop.sweep`, which the listeners'
  maintenance calls once a second (its timeouts may close any connection).

Listeners and the trigger are few and are asked on every turn, as before. A connection that is not
read while its answer is held (``hang_up_watched()``) is watched for ``POLLRDHUP`` instead, so a
client that hangs up meanwhile is still seen (``handle_hang_up()``).

Where the system has it (Linux), the kernel side is ``epoll``: ``poll()`` scans every registered
descriptor on every call, and in a storm of 512 clients, most of them waiting for an answer or a
held refusal, py-spy caught the loop thread inside ``poll()`` in 72 of 480 samples; ``epoll``
costs what is ready. Interleaved (``bench/results-ab-epoll.md``): 0.99 x the classifier's
goodput at 512 clients and 1.06 x summarization's, 0.98 x / 1.04 x at 32.
"""

from __future__ import annotations

import math
import select
import threading
from collections import deque
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel

_READ = select.POLLIN | select.POLLPRI if hasattr(select, "POLLIN") else 0
#: The peer closed its side (Linux): watched on connections that are not read meanwhile.
_HANG_UP = getattr(select, "POLLRDHUP", 0)

_serving = threading.local()


class _Epoll:
    """``select.epoll`` behind ``select.poll``'s interface: ``register`` also modifies, ``poll``
    takes milliseconds, and a descriptor closed since it was registered (epoll forgot it then,
    and its number may be another connection's now) is registered afresh rather than modified."""

    def __init__(self) -> None:
        self._epoll = select.epoll()

    def register(self, fd: int, flags: int) -> None:
        try:
            self._epoll.modify(fd, flags)
        except FileNotFoundError:
            self._epoll.register(fd, flags)

    def unregister(self, fd: int) -> None:
        try:
            self._epoll.unregister(fd)
        except OSError:  # closed already: epoll dropped it with its last reference
            pass

    def poll(self, timeout_ms: int) -> list[tuple[int, int]]:
        return self._epoll.poll(timeout_ms / 1000)


def serving(channel: Any) -> None:
    """Record (or clear, with None) the connection the calling task thread is serving."""
    _serving.channel = channel


class PollLoop:
    """One poll object for the connections of ``map``, kept up to date across turns."""

    def __init__(self, map: dict[int, Any]) -> None:
        self.map = map
        self._poller: Any = _Epoll() if hasattr(select, "epoll") else select.poll()
        #: fd -> (the object evaluated, the events it is registered for; 0: none)
        self._registered: dict[int, tuple[Any, int]] = {}
        #: Objects asked on every turn: listeners (whose readable() runs maintenance) and the trigger.
        self._every_turn: dict[int, Any] = {}
        #: Objects to ask again on the next turn, appended from any thread.
        self._touched: deque[Any] = deque()
        self._sweep_due = True

    def touch(self, obj: Any) -> None:
        """Ask ``obj`` again on the next turn (any thread; wake the loop after, if it sleeps)."""
        self._touched.append(obj)

    def touch_serving(self) -> None:
        """Ask again the connection the calling task thread serves, if any: call it before pulling
        the trigger, so the turn the trigger causes sees what the task changed."""
        channel = getattr(_serving, "channel", None)
        if channel is not None:
            self._touched.append(channel)

    def sweep(self) -> None:
        """Ask every connection again on the next turn."""
        self._sweep_due = True

    def run_once(self, timeout: float) -> None:
        """Update the registrations, wait up to ``timeout`` seconds for events and handle them."""
        for obj in list(self._every_turn.values()):
            self._evaluate(obj)
        for obj in self._to_evaluate():
            self._evaluate(obj)
        try:
            events = self._poller.poll(math.ceil(timeout * 1000))
        except InterruptedError:
            events = []
        for fd, flags in events:
            obj = self.map.get(fd)
            if obj is None:
                continue
            wasyncore.readwrite(obj, flags)
            if flags & _HANG_UP and hasattr(obj, "handle_hang_up"):
                obj.handle_hang_up()
            self._touched.append(obj)

    def _to_evaluate(self) -> set[Any]:
        """The objects whose interest may have changed (see the module's docstring)."""
        touched: set[Any] = set()
        while self._touched:
            touched.add(self._touched.popleft())
        for fd in self._registered.keys() - self.map.keys():  # closed since the last turn
            self._forget(fd)
        if self._sweep_due:
            self._sweep_due = False
            return set(self.map.values())
        for fd in self.map.keys() - self._registered.keys():  # opened since the last turn
            touched.add(self.map[fd])
        return touched

    def _evaluate(self, obj: Any) -> None:
        fd = getattr(obj, "_fileno", None)
        if fd is None or self.map.get(fd) is not obj:  # closed meanwhile (its descriptor may be reused)
            if fd is not None and self._every_turn.get(fd) is obj:
                del self._every_turn[fd]
            return
        if not isinstance(obj, HTTPChannel):
            self._every_turn[fd] = obj
        flags = 0
        if obj.readable():
            flags |= _READ
        elif getattr(obj, "hang_up_watched", bool)():
            flags |= _HANG_UP
        if obj.writable() and not obj.accepting:
            flags |= select.POLLOUT
        known = self._registered.get(fd)
        if known is not None and known[0] is obj and known[1] == flags:
            return
        if flags:
            self._poller.register(fd, flags)  # registers or modifies
        elif known is not None and known[1]:
            self._poller.unregister(fd)
        self._registered[fd] = (obj, flags)

    def _forget(self, fd: int) -> None:
        _, flags = self._registered.pop(fd)
        self._every_turn.pop(fd, None)
        if flags:
            self._poller.unregister(fd)

