"""The compute thread (core/compute_thread.py): every CPU model's passes on one thread, none held
back by a pass that hangs."""

from __future__ import annotations

import threading

import pytest

import modeldeploy
from modeldeploy import batching
from modeldeploy.compute_thread import THREAD_NAME, ComputeThread


def in_threads(count: int, fn) -> list:
    results: list = [None] * count

    def call(index: int) -> None:
        results[index] = fn()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_passes_from_many_threads_run_on_one_thread_and_return_their_results() -> None:
    compute = ComputeThread()
    seen = in_threads(4, lambda: compute.run(lambda: (threading.get_ident(), threading.current_thread().name)))
    assert len({ident for ident, _ in seen}) == 1
    assert seen[0][1] == THREAD_NAME and seen[0][0] != threading.get_ident()


def test_a_pass_that_raises_raises_in_its_caller_and_the_thread_serves_on() -> None:
    compute = ComputeThread()

    def fail() -> None:
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        compute.run(fail)
    assert compute.run(lambda: 42) == 42


def test_a_pass_may_run_another_without_waiting_for_itself() -> None:
    compute = ComputeThread()
    assert compute.run(lambda: compute.run(lambda: "inner") + " outer") == "inner outer"


def test_a_hanging_pass_holds_the_others_back_only_until_it_counts_as_stalled() -> None:
    compute = ComputeThread(stall_seconds=0.2)
    release, hanging_started = threading.Event(), threading.Event()

    def hang() -> str:
        hanging_started.set()
        release.wait(30)
        return "late"

    hung = []
    caller = threading.Thread(target=lambda: hung.append(compute.run(hang)))
    caller.start()
    assert hanging_started.wait(10)
    stalled_thread = compute._worker
    assert compute.run(lambda: "other model") == "other model"  # served by a new thread meanwhile
    assert compute._worker is not stalled_thread and stalled_thread.is_alive()
    release.set()
    caller.join(10)
    assert hung == ["late"]
    stalled_thread.join(10)
    assert not stalled_thread.is_alive()  # it ended once its pass returned
    assert compute.run(lambda: "again") == "again"


def test_the_batcher_runs_a_cpu_models_passes_and_calibration_on_the_compute_thread(tiny_models) -> None:
    wrapper = modeldeploy.load("sentiment", str(tiny_models["sentiment"]), device="cpu")
    threads = set()
    run_prepared = wrapper.run_prepared

    def recording(prepared):
        threads.add(threading.current_thread().name)
        return run_prepared(prepared)

    wrapper.run_prepared = recording
    batcher = batching.Batcher(wrapper).start()
    try:
        assert batcher.predict(["good", "a bad film"])[0]["label"]
    finally:
        batcher.close()
    assert threads == {THREAD_NAME}
