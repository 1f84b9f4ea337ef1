"""One thread for the CPU forward passes of every served model, so torch keeps one OpenMP pool.

libgomp, the OpenMP runtime of torch's Linux CPU wheels, gives each thread that starts parallel
work a pool of workers of its own, and once the pools' threads outnumber the CPUs it cuts the spin
of every worker waiting at a barrier to about a hundred iterations: each of the hundreds of
parallel regions of a forward pass then puts its workers to sleep and wakes them through the
kernel. With one batcher thread per model, a server of two models ran every forward pass about
1.6x slower than a server of one (the MiniLM classifier, a lone review, 2 cores: 15.4 vs 9.4 ms);
in-process, the same pass took 8.1 ms on a fresh thread and 14.7 ms on a thread started after
another thread had used torch.

:meth:`ComputeThread.run` hands a pass to one long-lived thread instead. One model's long pass
must not hold another's short one back, nor a hanging pass every other model: when a pass keeps
another waiting for more than ``wait_behind_seconds``, its thread is left to it and a new thread
serves the queue. The two passes then share the CPU, as they did on their own threads (torch has
two pools while both threads live); the old thread ends when its pass returns. Serving every pass
in turn, with no such limit, made a classifier's passes wait behind a summarizer's: in a soak of
three models its p99 went from 1.1 to 3.8 s and 338 of its requests were refused.
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

#: The longest (seconds) a pass waits behind another before a new thread takes it.
WAIT_BEHIND_SECONDS = 0.05
#: How often (seconds) a waiting caller looks at how long the running pass has run.
CHECK_SECONDS = 0.01
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

    def __init__(self, wait_behind_seconds: float = WAIT_BEHIND_SECONDS) -> None:
        self.wait_behind_seconds = wait_behind_seconds
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
        while not job.taken and not job.done.wait(CHECK_SECONDS):
            self._stop_waiting_behind(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _stop_waiting_behind(self, waiting: _Job) -> None:
        """Leave the running pass its thread, and serve the queue on a new one, once it has held
        ``waiting`` back for long enough."""
        with self._cond:
            since = self._running_since
            if waiting.taken or since is None or time.monotonic() - since < self.wait_behind_seconds:
                return
            log.debug("a pass has run for %.2fs with another waiting: a new compute thread serves the queue",
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
                    return  # replaced while its pass held others back
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
