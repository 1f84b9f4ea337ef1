"""Giving a thread's OpenMP workers back: the real libgomp frees them, and torch builds new ones."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

#: Runs in a fresh interpreter, so the thread counts are this script's own: a thread runs a parallel
#: torch op on 2 threads (starting one worker), gives the worker back, then computes again.
SCRIPT = textwrap.dedent("""
    import json, os, threading, time
    import torch
    from modeldeploy import openmp

    torch.set_num_threads(2)
    def threads():
        return len(os.listdir("/proc/self/task"))
    def settled(expected):
        deadline = time.monotonic() + 10
        while threads() != expected and time.monotonic() < deadline:
            time.sleep(0.01)
        return threads()
    seen = {}
    def work():
        values = torch.empty(4_000_000)  # allocated, not yet written: no parallel work so far
        seen["idle"] = threads()
        values.fill_(1)  # large enough for torch to split it across its OpenMP threads
        seen["computing"] = threads()
        seen["asked"] = openmp.release_thread_pool()
        seen["released"] = settled(seen["idle"])
        values.add_(1)
        seen["again"] = threads()
        seen["values"] = sorted(set(values.tolist()))
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    print(json.dumps(seen))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="libgomp's per-thread pools are Linux's")
def test_a_thread_gives_its_openmp_workers_back_and_computes_again() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["asked"] is True
    assert seen["computing"] == seen["idle"] + 1, seen  # torch's parallel op started one worker
    assert seen["released"] == seen["idle"], seen  # ... which is gone once given back
    assert seen["again"] == seen["computing"], seen  # and comes back for the next parallel op
    assert seen["values"] == [2.0]
