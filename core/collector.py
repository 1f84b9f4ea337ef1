"""Keep Python's cyclic garbage collector off what the loaded models hold.

A server with a model loaded holds hundreds of thousands of Python objects (the MiniLM classifier's
with torch and transformers: 364,000) that live as long as it does, and each full collection walked
all of them with the GIL held. Under a storm of 512 clients, one took 221-237 ms, and every request,
health checks and the refusals written on the HTTP loop's thread included, waited behind it (the
only probe answers over 100 ms in that storm came right after it; bench/results-gc-pauses.md). Once
a model is loaded, :func:`freeze_survivors` collects the garbage among the objects made since the
last freeze and moves the rest into the collector's permanent generation (``gc.freeze``), which
collections skip: full collections then walk only what was made since, mostly the requests' (at most
10.5 ms there).

Frozen objects are never collected as cycles. A retired model version (unloaded, or replaced by a
new one) is normally freed by its reference counts; if it is still alive once nothing should hold
it, :func:`free_retired` thaws everything, collects and freezes again, so that its cycles go too.

How a process collects garbage is its owner's choice: servers (``modeldeploy serve``, its model
worker processes and Ray replicas) call :func:`enable` at start; elsewhere (a notebook, tests with
many registries in one process) nothing is frozen.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_enabled = False
#: Seconds to wait before each further try to free a retired version a collection left alive.
RETRY_DELAYS = (0.1, 0.5, 2.0)


def enable() -> None:
    """Freeze what loaded models hold in this process from now on."""
    global _enabled
    _enabled = True


def freeze_survivors() -> bool:
    """Collect the garbage among the objects not frozen yet, then freeze the rest; a full collection
    of those objects only (for a model just loaded, what it made). True if enabled."""
    if not _enabled:
        return False
    with _LOCK:
        gc.collect()
        gc.freeze()
    return True


def free_retired(retired: weakref.ref[object]) -> bool:
    """Make sure a retired model that nothing should hold any more is collected: if ``retired``
    is still alive it may be frozen in a reference cycle, so thaw everything, collect and freeze
    again (one full collection of the process, about 0.2 s with one model). True if it did that.

    A thread may still hold the retired version for a moment (a request's frame that took it before
    the swap, unwinding), and a collection then leaves it alive and frozen again, its cycles for
    good once let go; so a survivor is tried again after each of :data:`RETRY_DELAYS`, then logged.
    """
    if not _enabled or retired() is None:
        return False
    for delay in (*RETRY_DELAYS, None):
        with _LOCK:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
        if retired() is None:
            return True
        if delay is not None:
            time.sleep(delay)
    log.warning("%s is still alive %.2f s after it was retired: something holds a reference to it, and the "
                "memory it holds stays in use", repr(retired()), sum(RETRY_DELAYS))
    return True
