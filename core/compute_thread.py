"""One thread for the CPU forward passes of every served model, so torch keeps one OpenMP pool.

libgomp, the OpenMP runtime of torch's Linux CPU wheels, gives each thread that starts parallel
work a pool of workers of its own, and once the pools' threads outnumber the CPUs it cuts the spin
of every worker waiting at a barrier to about a hundred iterations: each of the hundreds of
parallel regions of a forward pass then puts its workers to sleep and wakes them through the
kernel. With one batcher thread per model, a server of two models ran every forward pass about
1.6x slower than a server of one (the MiniLM classifier, a lone review, 2 cores: 15.4 vs 9.4 ms);
in-process, the same pass took 8.1 ms on a fresh thread and 14.7 ms on a thread started after
another thread had used torch.

:meth:`ComputeThread.run` hands a pass to one long-lived thread instead. A model whose pass hangs
must not hold the others back: when a pass has run for longer than ``stall_seconds`` while
another waits, its thread is left to it and a new thread serves the queue (torch has two pools
again while both live); the old thread ends when its pass returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A pass that runs this long (seconds) while another waits keeps its thread to itself.
STALL_SECONDS = 1.0
#: How often (seconds) a waiting caller looks for a stalled pass.
CHECK_SECONDS = 0.1
THREAD_NAME = "modeldeploy-compute"

_inside = threading.local()


class _Job:
    __slots__ = ("fn", "done", "result", "error", "taken")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.taken = False


class ComputeThread:
    """A queue of passes served, in order, by one thread at a time (see the module's docstring)."""

    def __init__(self, stall_seconds: float = STALL_SECONDS) -> None:
        self.stall_seconds = stall_seconds
        self._cond = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._worker: threading.Thread | None = None
        #: When the current worker took its running pass (None while it waits for one).
        self._running_since: float | None = None

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the compute thread: its result, or its exception raised here."""
        if getattr(_inside, "active", False):
            return fn()  # already on a compute thread (a pass that runs another): no queue to wait in
        job = _Job(fn)
        with self._cond:
            if self._worker is None:
                self._start_worker()
            self._queue.append(job)
            self._cond.notify()
        while not job.done.wait(CHECK_SECONDS):
            self._give_up_on_stalled_pass(job)
        if job.error is not None:
            raise job.error
        return job.result

    def _give_up_on_stalled_pass(self, waiting: _Job) -> None:
        with self._cond:
            since = self._running_since
            if waiting.taken or since is None or time.monotonic() - since < self.stall_seconds:
                return
            log.warning("a forward pass has run for %.1fs; the passes of other models go on in a new compute thread",
                        time.monotonic() - since)
            self._start_worker()

    def _start_worker(self) -> None:
        """Start a thread that serves the queue from now on (the previous one, if any, ends after
        its running pass). Called with the condition held."""
        self._running_since = None
        self._worker = threading.Thread(target=self._serve, name=THREAD_NAME, daemon=True)
        self._worker.start()

    def _serve(self) -> None:
        _inside.active = True
        me = threading.current_thread()
        while True:
            with self._cond:
                while not self._queue and self._worker is me:
                    self._cond.wait()
                if self._worker is not me:
                    return  # replaced while its pass stalled
                job = self._queue.popleft()
                job.taken = True
                self._running_since = time.monotonic()
            try:
                job.result = job.fn()
            except BaseException as exc:  # the caller's to handle; this thread serves on
                job.error = exc
            with self._cond:
                if self._worker is me:
                    self._running_since = None
            job.done.set()


#: The process's compute thread, shared by every CPU model's batcher.
COMPUTE = ComputeThread()
