"""Several forward passes of one model at once, each on its share of the CPU's threads.

One pass on every core of a CPU spends part of each operator waiting: torch's OpenMP threads
meet at a barrier after every parallel region (hundreds a pass), the Python between operators
runs on one thread while the others wait, and any other thread that runs (the HTTP front's)
takes a core from one of them and stalls its partner at the next barrier. Two passes at once,
each on one thread, share no barrier and overlap one's Python with the other's arithmetic: on
2 cores the MiniLM classifier's ideal-window sub-batches ran 1.08-1.15x as fast that way
(docs/architecture.md, "Adaptive batching"). The batcher uses streams for rounds of several
sub-batches where its cost model says they end sooner; a lone pass still gets every thread.

Each stream is a thread whose torch intra-op thread count is set once, when it starts. torch
keeps that count per thread, but setting it also sets the default that threads starting later
take, so :meth:`PassStreams.start` puts the caller's count back as that default; and a thread
takes that default at its first parallel work unless it asked for its count before, so each
stream asks at once (missed, each stream ran on every thread, and their OpenMP workers slowed
every other pass in the process).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

#: Starting streams changes torch's process-wide default for a moment: one start at a time.
_START_LOCK = threading.Lock()


class PassStreams:
    """``count`` threads, each running jobs (forward passes) on ``threads_each`` torch threads."""

    def __init__(self, count: int, threads_each: int, name: str,
                 rest: tuple[float, Callable[[], object]] | None = None) -> None:
        """``rest``: (seconds, call) — a stream idle that long makes the call once, on its own
        thread, until it works again (the batcher gives the stream's OpenMP workers back)."""
        if count < 1 or threads_each < 1:
            raise ValueError(f"streams need count >= 1 and threads_each >= 1, got {count} and {threads_each}")
        self.count, self.threads_each, self.name, self.rest = count, threads_each, name, rest
        self._lock = threading.Lock()
        self._work_queued = threading.Condition(self._lock)
        self._all_done = threading.Condition(self._lock)
        self._jobs: deque[tuple[int, Callable[[], object]]] = deque()
        self._pending = 0
        self._times: list[tuple[float, float]] = []
        self._error: BaseException | None = None
        self._closed = False
        self._threads: list[threading.Thread] = []

    def start(self) -> "PassStreams":
        """Start the streams; returns once each has set its torch thread count."""
        import torch

        with _START_LOCK:
            default = torch.get_num_threads()
            ready = [threading.Event() for _ in range(self.count)]
            self._threads = [threading.Thread(target=self._work, args=(event,), daemon=True,
                                              name=f"modeldeploy-stream-{self.name}-{index}")
                             for index, event in enumerate(ready)]
            for thread in self._threads:
                thread.start()
            for event in ready:
                event.wait()
            torch.set_num_threads(default)  # the default for threads that start later, as it was
        return self

    def run(self, jobs: Sequence[Callable[[], object]]) -> list[tuple[float, float]]:
        """Run ``jobs``, the streams taking them in this order as each is free; return once all
        have ended, with each one's (started, ended) ``time.monotonic()``. The first exception a
        job raised is raised here, after the others have ended."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the pass streams of {self.name!r} are closed")
            self._times = [(0.0, 0.0)] * len(jobs)
            self._error = None
            self._pending = len(jobs)
            self._jobs.extend(enumerate(jobs))
            self._work_queued.notify(min(len(jobs), self.count))
            while self._pending:
                self._all_done.wait()
            error, times = self._error, self._times
            self._error = None  # its traceback would keep the failed pass's frames alive
        if error is not None:
            try:
                raise error
            finally:
                del error  # else this frame, kept by the traceback, and the error would form a cycle
        return times

    def close(self) -> None:
        """Let the streams finish what they were given, then end."""
        with self._lock:
            self._closed = True
            self._work_queued.notify_all()

    def _next_job(self) -> tuple[int, Callable[[], object]] | None:
        """The next job for this stream, waiting for one; None once closed and all are taken."""
        resting_after = None if self.rest is None else self.rest[0]
        while True:
            with self._lock:
                if self._jobs:
                    return self._jobs.popleft()
                if self._closed:
                    return None
                if self._work_queued.wait(resting_after) or self.rest is None:
                    continue
            self.rest[1]()  # idle this long: rest, once
            resting_after = None

    def _work(self, ready: threading.Event) -> None:
        import torch

        torch.set_num_threads(self.threads_each)
        # torch sets a thread's count from the process default at its first parallel work, unless
        # asked before: ask now, while that default is this stream's, then set it once more
        torch.get_num_threads()
        torch.set_num_threads(self.threads_each)
        ready.set()
        while True:
            taken = self._next_job()
            if taken is None:
                return
            index, job = taken
            error = None
            started = time.monotonic()
            try:
                job()
            except BaseException as exc:  # handed to run()'s caller, whose round it is
                error = exc
            ended = time.monotonic()
            with self._lock:
                self._times[index] = (started, ended)
                if error is not None and self._error is None:
                    self._error = error
                self._pending -= 1
                if not self._pending:
                    self._all_done.notify()
            taken = job = error = None  # waiting for the next, a stream keeps neither this pass's inputs nor its model
