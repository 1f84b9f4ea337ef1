"""OpenMP for serving: the real libgomp frees a thread's workers and torch builds new ones; a server
asks libgomp for short spins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from modeldeploy import openmp

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


def spins_chosen(code: str, **environ: str) -> str:
    """``GOMP_SPINCOUNT`` after running ``code`` in a fresh interpreter with this environment."""
    base = {key: value for key, value in os.environ.items() if key not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    script = f"import os\n{code}\nprint(os.environ.get('GOMP_SPINCOUNT', 'unset'))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True,
                          env={**base, **environ})
    return done.stdout.strip().splitlines()[-1]


def test_a_server_asks_libgomp_for_short_spins_unless_the_environment_chose() -> None:
    ask = "from modeldeploy import openmp\nassert openmp.prefer_short_spins() is {}"
    assert spins_chosen(ask.format(True)) == str(openmp.SERVING_SPIN_COUNT)
    assert spins_chosen(ask.format(False), GOMP_SPINCOUNT="123") == "123"  # the user's choice stands
    assert spins_chosen(ask.format(False), OMP_WAIT_POLICY="PASSIVE") == "unset"
    # once torch is loaded its libgomp has read the environment: asking then would only mislead
    assert spins_chosen("import torch\n" + ask.format(False)) == "unset"
