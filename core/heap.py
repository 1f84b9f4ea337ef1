"""The host heap upkeep that keeps a server's memory flat under varied inputs (:class:`HeapTrimmer`)."""

from __future__ import annotations

import os
import platform
import threading
from collections.abc import Callable

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class HeapTrimmer:
    """Gives the free memory inside glibc's malloc heaps back to the OS when it has piled up.

    Why: torch allocates CPU tensors with ``malloc``, and glibc adapts its mmap threshold (each
    freed mapped block raises it to that block's size, up to 32 MiB), so after warm-up a forward
    pass's activations are carved out of the malloc heaps and reused there. With one input shape
    the same blocks are reused batch after batch. With varied text lengths every padded batch
    has new shapes (rows x tokens, and tokens x tokens in attention): blocks are split and
    coalesced into holes that later requests do not fit, the heaps keep extending, and the pages
    of the holes stay resident. A sentiment server (base size, 8 clients, texts of 1-2,000
    characters) grew 5.5-80 MB per minute, depending on its speed, without a plateau; with one fixed
    text it stayed flat; the Python heap (tracemalloc) grew by kilobytes (``bench/results-memory.md``).

    The bound: :meth:`after_pass` runs after each forward pass (``ModelWrapper.run_prepared``),
    reads the process's resident memory (``/proc/self/statm``, microseconds) and, when it exceeds
    the level measured right after the last trim by more than ``slack_bytes`` (default 256 MiB),
    calls glibc's ``malloc_trim(0)``, which returns every whole free page of every heap (holes
    included) to the OS. So resident memory never exceeds the live set (weights, caches, Python;
    what is left right after a trim) plus ``slack_bytes``, plus the activations of the pass
    running, however long the server runs and however varied the shapes (10 minutes of varied
    traffic: 534 MB after load, never above 906). Each trim costs a refault of the next pass's
    activations: trimming after every pass cost 3% more CPU per item on the base sentiment model;
    with the slack a trim comes every 30-60 s in that soak, and traffic that does not fragment
    (one shape) never trims. Pinning the mmap threshold (``mallopt``) instead also keeps memory
    flat but maps and faults every tensor of 128 KiB or more: +15% CPU per item. When one pass's
    activations alone exceed the slack (32 texts of 2,000 characters come close), passes right
    after a trim trim again: still bounded, at about the every-pass cost.

    ``slack_bytes`` 0 trims after every pass. A no-op where the C library is not glibc
    (``malloc_trim`` missing) or resident memory cannot be read; ``rss`` and ``trim`` are
    injectable for tests.
    """

    def __init__(self, slack_bytes: int = 256 << 20, rss: Callable[[], int | None] | None = None,
                 trim: Callable[[], object] | None = None) -> None:
        self.slack_bytes = slack_bytes
        self._rss = rss or _resident_bytes
        self._trim = trim
        self._resolved = trim is not None
        self._lock = threading.Lock()
        #: Resident bytes measured right after the last trim (None before the first).
        self.floor: int | None = None
        #: Trims done so far (for tests and diagnostics).
        self.count = 0

    def after_pass(self) -> bool:
        """Trim if resident memory exceeds the last post-trim level by more than the slack (the
        first call always trims, to measure that level); True if it did."""
        trim = self._trim_function()
        if trim is None:
            return False
        resident = self._rss()
        if resident is None:
            return False
        if self.floor is not None and resident - self.floor <= self.slack_bytes:
            return False
        with self._lock:
            trim()
            self.count += 1
            self.floor = self._rss()
        return True

    def _trim_function(self) -> Callable[[], object] | None:
        if not self._resolved:
            self._resolved = True
            self._trim = _glibc_malloc_trim()
        return self._trim


def _resident_bytes() -> int | None:
    """This process's resident memory in bytes (Linux), None where ``/proc`` is missing."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def _glibc_malloc_trim() -> Callable[[], object] | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    import ctypes

    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    malloc_trim.argtypes, malloc_trim.restype = (ctypes.c_size_t,), ctypes.c_int
    return lambda: malloc_trim(0)


#: The process's trimmer: the heaps are per process, so one schedule serves every model in it.
HEAP_TRIMMER = HeapTrimmer()
