"""Give an idle thread's OpenMP workers back, so the threads still computing run at full speed.

GNU OpenMP (libgomp, torch's OpenMP on Linux) gives every thread that starts parallel work a pool
of workers of its own, kept until that thread exits. Once the pools' threads together outnumber
the CPUs, libgomp cuts every barrier's spin to about a hundred iterations, so each parallel region
(a forward pass has hundreds) wakes its workers through the kernel: on 2 cores the classifier's
pass ran ~1.6x slower in a server that also served a second model, idle (docs/architecture.md,
"Several models on the CPU"). ``omp_pause_resource_all`` (OpenMP 5.0) frees the calling thread's
pool; its next parallel region builds a new one (measured: ~0.15 ms to free, ~0.4 ms more on the
next pass, and no memory growth over 3,000 cycles).

A waiting worker spins ``GOMP_SPINCOUNT`` times before it sleeps (libgomp's default: 300,000, a few
milliseconds). Between the parallel regions of one pass that saves a wake-up; after the pass it
takes a core from the HTTP threads and the other models for nothing. A server asks for
:data:`SERVING_SPIN_COUNT` instead (measured on the classifier, alone on 2 cores: less CPU a pass
and a faster answer; docs/architecture.md, "Several models on the CPU").

Elsewhere (no ``/proc/self/maps``, LLVM's libomp, a libgomp older than GCC 9) this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

#: Spins of a waiting libgomp worker before it sleeps, for serving (libgomp's default: 300,000).
SERVING_SPIN_COUNT = 50_000

#: OpenMP 5.0's ``omp_pause_soft``: free the threads, keep the runtime's state.
_PAUSE_SOFT = 1

_lock = threading.Lock()
#: Each libgomp seen mapped, by path, opened (None: it cannot pause).
_runtimes: dict[str, ctypes.CDLL | None] = {}


def release_thread_pool() -> bool:
    """Free the OpenMP workers the calling thread started (in every libgomp loaded); True if one was asked.

    Call it only from a thread that is between parallel regions, i.e. not from inside torch's work.
    """
    runtimes = _loaded_libgomps()
    for runtime in runtimes:
        runtime.omp_pause_resource_all(_PAUSE_SOFT)
    return bool(runtimes)


def prefer_short_spins() -> bool:
    """Ask libgomp for :data:`SERVING_SPIN_COUNT` spins unless the environment already chose
    (``GOMP_SPINCOUNT``, ``OMP_WAIT_POLICY``); True if asked. libgomp reads its environment once,
    when it loads, so this must run before torch is imported; worker processes inherit it."""
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules:
        return False
    os.environ["GOMP_SPINCOUNT"] = str(SERVING_SPIN_COUNT)
    return True


def _loaded_libgomps() -> list[ctypes.CDLL]:
    """Every libgomp mapped into this process now (wheels bundle their own copies; one may load late)."""
    with _lock:
        for path in _mapped_libgomp_paths():
            if path not in _runtimes:
                _runtimes[path] = _open(path)
        return [runtime for runtime in _runtimes.values() if runtime is not None]


def _mapped_libgomp_paths() -> list[str]:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split(maxsplit=5)[-1].strip() for line in maps if "libgomp" in line}
    except OSError:  # not Linux
        return []
    return sorted(path for path in paths if path.startswith("/"))


def _open(path: str) -> ctypes.CDLL | None:
    try:
        runtime = ctypes.CDLL(path)  # already mapped: this only takes another reference
        runtime.omp_pause_resource_all.argtypes = [ctypes.c_int]
        runtime.omp_pause_resource_all.restype = ctypes.c_int
    except (OSError, AttributeError):  # unloadable, or a libgomp without OpenMP 5.0's pause
        return None
    return runtime
