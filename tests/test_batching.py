"""The batcher: results independent of grouping, order, backpressure, timeouts, fault isolation."""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch
from modeldeploy_ner import NerWrapper
from modeldeploy_sentiment import SentimentWrapper
from modeldeploy_summarization import SummarizationWrapper
from same_results import assert_same
from waiting import wait_for

from modeldeploy import batching, metrics, openmp
from modeldeploy.batch_planner import CostModel
from modeldeploy.batching import IDLE_POOL_RELEASE_SECONDS, Batcher, calibrate_cost_model, configure_torch_threads
from modeldeploy.cancellation import Cancellation
from modeldeploy.config import BatchConfig, parse_config
from modeldeploy.errors import (
    ConfigError,
    ModelNotReadyError,
    OverloadedError,
    PredictionError,
    PredictionTimeoutError,
    RequestCancelledError,
)
from modeldeploy.registry import Registry

TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday.",
    "Great!",
    "This was a terrible waste of time and money, and the story made no sense at all to me or my friends.",
    "Apple opened offices in London.",
    "ok",
    "Researchers at Stanford University published a study about language models and Tokyo.",
    "The quick brown fox jumps over the lazy dog near the river bank in Berlin.",
]

#: Cost models that force opposite groupings: every text alone, or as few batches as possible.
GROUPINGS = {
    "singles": CostModel(overhead=0.0, per_token=1.0),
    "few-batches": CostModel(overhead=1e6, per_token=1.0),
    "default": CostModel(),
}


#: How long a batch holding a "sleepy" text takes: the round the regroup tests measure from.
SLEEPY_SECONDS = 1.0


class GatedSentiment(SentimentWrapper):
    """The real tiny sentiment model, with a gate to hold the inference thread and a poison pill."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.gate.set()
        self.batches: list[list[str]] = []

    def predict_batch(self, items: list[str]) -> list[Any]:
        self.batches.append(list(items))
        if any("slow" in item for item in items):
            assert self.gate.wait(30)
        if any("sleepy" in item for item in items):
            time.sleep(SLEEPY_SECONDS)
        if any("POISON" in item for item in items):
            raise ValueError("poisoned input")
        return super().predict_batch(items)


@pytest.fixture(scope="module")
def wrappers(tiny_models) -> dict[str, Any]:
    classes = {"sentiment": SentimentWrapper, "ner": NerWrapper, "summarization": SummarizationWrapper}
    return {name: cls(source=str(tiny_models[name]), device="cpu").ensure_loaded() for name, cls in classes.items()}


@pytest.fixture
def gated(tiny_models) -> GatedSentiment:
    return GatedSentiment(source=str(tiny_models["sentiment"]), device="cpu").ensure_loaded()


def started(wrapper: Any, **config: Any) -> Batcher:
    return Batcher(wrapper, BatchConfig(**config)).start(calibrate=False)


def wait_until_busy(gated: GatedSentiment) -> None:
    """Wait until the inference thread is held at the gate by a "slow" text."""
    for _ in range(3000):
        if any("slow" in text for batch in gated.batches for text in batch):
            return
        time.sleep(0.01)
    raise AssertionError("the inference thread never reached the gate")


def wait_for_queue(batcher: Batcher, depth: int) -> None:
    for _ in range(3000):
        if len(batcher._queue) >= depth:
            return
        time.sleep(0.01)
    raise AssertionError(f"queue never reached {depth} items")


@pytest.fixture(scope="module")
def single_results(wrappers) -> dict[str, list[Any]]:
    """Each text run alone: the reference every grouping must reproduce."""
    return {task: [wrapper.run_batch([text])[0] for text in TEXTS] for task, wrapper in wrappers.items()}


@pytest.mark.parametrize("task", ["sentiment", "ner", "summarization"])
@pytest.mark.parametrize("grouping", sorted(GROUPINGS))
def test_batched_results_equal_single_results(wrappers, single_results, task, grouping, monkeypatch) -> None:
    wrapper, singles = wrappers[task], single_results[task]
    monkeypatch.setattr(wrapper, "cost_model", GROUPINGS[grouping])
    for max_batch_size in (2, 32):
        batcher = started(wrapper, max_batch_size=max_batch_size)
        try:
            assert_same(batcher.submit(TEXTS), singles)
        finally:
            batcher.close()
    assert_same(wrapper.predict(TEXTS), singles)  # the direct Python path plans the same way


def test_concurrent_requests_are_batched_and_paired_correctly(gated) -> None:
    expected = {text: gated.run_batch([text])[0] for text in TEXTS}
    gated.batches.clear()
    batcher = started(gated, max_batch_size=8)
    gated.gate.clear()
    calls = [(f"slow {i}" if i == 0 else TEXTS[i % len(TEXTS)]) for i in range(32)]
    try:
        with ThreadPoolExecutor(32) as pool:
            first = pool.submit(batcher.submit, [calls[0]])
            wait_until_busy(gated)
            futures = [pool.submit(batcher.predict, text) for text in calls[1:]]
            wait_for_queue(batcher, 31)
            gated.gate.set()
            results = [f.result(timeout=60) for f in futures]
            first.result(timeout=60)
    finally:
        batcher.close()
    for text, result in zip(calls[1:], results):
        assert_same(result, expected[text])
    sizes = [len(batch) for batch in gated.batches[1:]]
    assert sum(sizes) == 31 and max(sizes) > 1 and max(sizes) <= 8


def test_a_list_is_split_across_batches_and_reassembled(gated) -> None:
    texts = [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(20)]
    expected = [gated.run_batch([t])[0] for t in texts]
    gated.batches.clear()
    batcher = started(gated, max_batch_size=4)
    try:
        assert_same(batcher.predict(texts), expected)
        assert batcher.submit([]) == []
    finally:
        batcher.close()
    assert len(gated.batches) >= 5 and all(len(b) <= 4 for b in gated.batches)


def run_a_round_of_four(gated: GatedSentiment, batcher: Batcher, pool: ThreadPoolExecutor,
                        queued_meanwhile: int = 0, refused_meanwhile: bool = False) -> list[Any]:
    """Make the batcher answer one round of 4 requests that takes ``SLEEPY_SECONDS``, with
    ``queued_meanwhile`` other requests sent during it (their futures are returned), and with
    ``refused_meanwhile`` one refused during it (its deadline too short)."""
    gated.cost_model = GROUPINGS["few-batches"]  # the 4 run as one forward pass
    gated.gate.clear()
    busy = pool.submit(batcher.predict, "slow")
    wait_until_busy(gated)
    round_of_four = [pool.submit(batcher.predict, f"sleepy {i}") for i in range(4)]
    wait_for_queue(batcher, 4)
    gated.gate.set()
    busy.result(timeout=60)
    for _ in range(3000):
        if any("sleepy" in text for text in gated.batches[-1]):
            break
        time.sleep(0.01)
    others = [pool.submit(batcher.predict, f"meanwhile {i}") for i in range(queued_meanwhile)]
    wait_for_queue(batcher, queued_meanwhile)
    if refused_meanwhile:
        with pytest.raises(OverloadedError, match="cannot answer within the request's deadline"):
            batcher.submit(["too late"], timeout=0.001)
    for future in round_of_four:
        future.result(timeout=60)
    assert len(gated.batches[-1]) == 4 and all("sleepy" in text for text in gated.batches[-1])
    return others


def send_spaced(batcher: Batcher, pool: ThreadPoolExecutor, texts: list[str], gap: float) -> list[Any]:
    futures = []
    for text in texts:
        futures.append(pool.submit(batcher.predict, text))
        time.sleep(gap)
    return [future.result(timeout=60) for future in futures]


@pytest.mark.parametrize("regroup_wait", [1.0, 0.0])
def test_after_a_busy_round_the_batcher_regroups_the_clients_it_answered(gated, regroup_wait) -> None:
    """The 4 clients just answered come back 0.1 s apart, well inside the regroup window (the
    round took 1 s): they run as one batch instead of a lone first one and the rest later."""
    batcher = started(gated, max_batch_size=8, regroup_wait=regroup_wait)
    try:
        with ThreadPoolExecutor(8) as pool:
            run_a_round_of_four(gated, batcher, pool)
            before = len(gated.batches)
            results = send_spaced(batcher, pool, [f"again {i}" for i in range(4)], gap=0.1)
    finally:
        batcher.close()
    assert all(result["label"] in {"POSITIVE", "NEGATIVE"} for result in results)
    sizes = [len(batch) for batch in gated.batches[before:]]
    if regroup_wait:
        assert sizes == [4]
    else:
        assert sizes[0] == 1 and sum(sizes) == 4


def test_no_round_waits_to_regroup_once_work_was_refused(gated) -> None:
    """More is offered than the model takes: a pause for companions would only idle it, and make
    the work accepted later than it was priced."""
    batcher = started(gated, max_batch_size=8, regroup_wait=1.0)
    try:
        with ThreadPoolExecutor(8) as pool:
            run_a_round_of_four(gated, batcher, pool, refused_meanwhile=True)
            before = len(gated.batches)
            send_spaced(batcher, pool, [f"again {i}" for i in range(4)], gap=0.1)
    finally:
        batcher.close()
    sizes = [len(batch) for batch in gated.batches[before:]]
    assert sizes[0] == 1 and sum(sizes) == 4


def test_regrouping_also_waits_for_what_queued_during_the_round(gated) -> None:
    """4 answered while 4 others queued: running those 4 at once would keep the 8 clients in two
    alternating groups of 4 for ever; the batcher waits for the 4 answered to return and runs 8."""
    batcher = started(gated, max_batch_size=8, regroup_wait=1.0)
    try:
        with ThreadPoolExecutor(12) as pool:
            others = run_a_round_of_four(gated, batcher, pool, queued_meanwhile=4)
            before = len(gated.batches)
            send_spaced(batcher, pool, [f"again {i}" for i in range(4)], gap=0.1)
            for future in others:
                future.result(timeout=60)
    finally:
        batcher.close()
    assert [len(batch) for batch in gated.batches[before:]] == [8]


def test_clients_answered_early_in_a_round_are_not_expected_twice(gated) -> None:
    """4 clients, their round split into a quick sub-batch of 3 and a 1 s one: the 3 answered first
    are back (queued) before the round ends. Once the 4th is back too, all 4 clients are there and
    the round starts; counting the 3 both as answered and as queued, the batcher waited its whole
    regroup window for 7 and took in a request sent 0.3 s later."""
    batcher = started(gated, max_batch_size=8, regroup_wait=1.0)
    sleepy = "sleepy " + " ".join(["long"] * 40)  # the longest: planned last
    try:
        with ThreadPoolExecutor(8) as pool:
            # a pass costs 50 tokens' worth: the 3 short texts and the long one run apart, short ones together
            gated.cost_model = CostModel(overhead=50.0, per_token=1.0)
            gated.gate.clear()
            busy = pool.submit(batcher.predict, "slow")
            wait_until_busy(gated)
            quick = [pool.submit(batcher.predict, f"quick {i}") for i in range(3)]
            last = pool.submit(batcher.predict, sleepy)
            wait_for_queue(batcher, 4)
            gated.gate.set()
            busy.result(timeout=60)
            for future in quick:
                future.result(timeout=60)
            again = [pool.submit(batcher.predict, f"again {i}") for i in range(3)]  # during the 1 s pass
            wait_for_queue(batcher, 3)
            last.result(timeout=60)
            before = len(gated.batches)
            time.sleep(0.1)  # the 1 s round has ended and been summed up
            again.append(pool.submit(batcher.predict, "again 3"))
            time.sleep(0.3)
            late = pool.submit(batcher.predict, "late")
            for future in [*again, late]:
                future.result(timeout=60)
    finally:
        batcher.close()
    assert [sorted(batch) for batch in gated.batches[before:]] == [[f"again {i}" for i in range(4)], ["late"]]


def test_once_the_regroup_window_has_passed_a_lone_request_runs_at_once(gated) -> None:
    """An idle model never makes a request wait for companions (the window is 0.2 x 1 s)."""
    batcher = started(gated, max_batch_size=8, regroup_wait=0.2)
    try:
        with ThreadPoolExecutor(8) as pool:
            run_a_round_of_four(gated, batcher, pool)
            time.sleep(0.5)
            before = len(gated.batches)
            send_spaced(batcher, pool, ["lone", "later"], gap=0.1)
    finally:
        batcher.close()
    assert [len(batch) for batch in gated.batches[before:]] == [1, 1]


def test_full_queue_is_refused_at_once_then_drains(gated) -> None:
    batcher = started(gated, max_queue=4)
    gated.gate.clear()
    try:
        with ThreadPoolExecutor(8) as pool:
            busy = pool.submit(batcher.predict, "slow")
            wait_until_busy(gated)
            queued = pool.submit(batcher.predict, ["a", "b", "c"])
            wait_for_queue(batcher, 3)
            with pytest.raises(OverloadedError, match="max_queue 4") as info:
                batcher.predict(["d", "e"])
            assert info.value.retry_after >= 1
            fits = pool.submit(batcher.predict, "d")
            wait_for_queue(batcher, 4)
            gated.gate.set()
            assert len(queued.result(timeout=60)) == 3
            assert fits.result(timeout=60)["label"] in {"POSITIVE", "NEGATIVE"}
            assert busy.result(timeout=60)["label"] in {"POSITIVE", "NEGATIVE"}
    finally:
        batcher.close()


def test_requests_let_through_count_as_queued_until_they_arrive(gated, monkeypatch) -> None:
    """The HTTP front judges a storm's first burst before any of it is queued: what it lets through
    with ``reserve`` counts against the queue until a request reaches a thread, or for a while."""
    monkeypatch.setattr(batching, "RESERVATION_SECONDS", 0.5)
    batcher = started(gated, max_queue=3)
    try:
        assert [batcher.refusal(reserve=True) for _ in range(3)] == [None, None, None]
        refused = batcher.refusal(reserve=True)
        assert "0 items queued, 3 on their way, max_queue 3" in str(refused)
        assert batcher.refusal() is not None  # judged by the same count, reserving nothing more
        batcher.end_reservation()  # one has reached a thread
        assert batcher.refusal(reserve=True) is None
        assert batcher.refusal(reserve=True) is not None
        time.sleep(0.6)  # never arrived: they stop counting
        assert batcher.refusal() is None and not batcher._reservations
    finally:
        batcher.close()


def test_a_request_larger_than_the_queue_still_runs_when_the_queue_is_empty(gated) -> None:
    batcher = started(gated, max_queue=2)
    try:
        assert len(batcher.predict(["a", "b", "c", "d"])) == 4
    finally:
        batcher.close()


def test_timeout_while_queued_drops_the_work(gated) -> None:
    batcher = started(gated)
    gated.gate.clear()
    try:
        with ThreadPoolExecutor(2) as pool:
            busy = pool.submit(batcher.predict, "slow")
            wait_until_busy(gated)
            with pytest.raises(PredictionTimeoutError, match="dropped"):
                batcher.predict("abandoned text", timeout=0.2)
            assert len(batcher._queue) == 0
            gated.gate.set()
            busy.result(timeout=60)
            assert batcher.predict("after")["label"] in {"POSITIVE", "NEGATIVE"}
    finally:
        batcher.close()
    assert not any("abandoned text" in item for batch in gated.batches for item in batch)


def test_timeout_after_draining_drops_the_remaining_sub_batches(gated) -> None:
    dropped = metrics.ITEMS.labels(gated.name, "dropped")
    before = dropped._value.get()
    batcher = started(gated, max_batch_size=1)
    gated.gate.clear()
    try:
        with pytest.raises(PredictionTimeoutError):
            batcher.predict(["slow", "a much longer text that is planned after the slow one"], timeout=0.3)
        gated.gate.set()
        assert batcher.predict("next")["label"] in {"POSITIVE", "NEGATIVE"}
    finally:
        batcher.close()
    assert not any("much longer" in item for batch in gated.batches for item in batch)
    assert dropped._value.get() == before + 1


def test_a_cancelled_request_leaves_the_queue_at_once_and_is_never_computed(gated) -> None:
    dropped = metrics.ITEMS.labels(gated.name, "dropped")
    before = dropped._value.get()
    batcher = started(gated)
    gated.gate.clear()
    cancellation = Cancellation()
    try:
        with ThreadPoolExecutor(2) as pool:
            busy = pool.submit(batcher.predict, "slow")
            wait_until_busy(gated)
            left = pool.submit(batcher.submit, ["the client hung up"], None, cancellation)
            wait_for_queue(batcher, 1)
            cancellation.cancel()
            with pytest.raises(RequestCancelledError, match="went away"):
                left.result(timeout=5)  # at once, while the round it waited behind still runs
            assert len(batcher._queue) == 0 and not busy.done()
            assert dropped._value.get() == before + 1
            gated.gate.set()
            assert busy.result(timeout=60)["label"] in {"POSITIVE", "NEGATIVE"}
    finally:
        gated.gate.set()
        batcher.close()
    assert not any("hung up" in item for batch in gated.batches for item in batch)


def test_a_request_cancelled_during_its_round_skips_its_remaining_sub_batches(gated) -> None:
    batcher = started(gated, max_batch_size=1)
    gated.gate.clear()
    cancellation = Cancellation()
    try:
        with ThreadPoolExecutor(1) as pool:
            both = pool.submit(batcher.submit, ["slow", "a much longer text that is planned after the slow one"],
                               None, cancellation)
            wait_until_busy(gated)
            cancellation.cancel()
            with pytest.raises(RequestCancelledError):
                both.result(timeout=5)
        gated.gate.set()
        assert batcher.predict("next")["label"] in {"POSITIVE", "NEGATIVE"}
    finally:
        gated.gate.set()
        batcher.close()
    assert not any("much longer" in item for batch in gated.batches for item in batch)


def test_cancelling_after_the_answer_changes_nothing(gated) -> None:
    dropped = metrics.ITEMS.labels(gated.name, "dropped")
    before = dropped._value.get()
    batcher = started(gated)
    cancellation = Cancellation()
    try:
        [result] = batcher.submit(["answered in time"], None, cancellation)
        cancellation.cancel()
        assert result["label"] in {"POSITIVE", "NEGATIVE"}
        assert batcher.predict("still serving")["label"] in {"POSITIVE", "NEGATIVE"}
    finally:
        batcher.close()
    assert dropped._value.get() == before


def test_a_poisoned_item_fails_alone(gated) -> None:
    expected = {text: gated.run_batch([text])[0] for text in TEXTS}
    batcher = started(gated, max_batch_size=16)
    gated.gate.clear()
    calls: list[Any] = [TEXTS[i % len(TEXTS)] for i in range(12)]
    calls[3] = "POISON pill"
    calls[8] = [TEXTS[0], "more POISON", TEXTS[1]]
    try:
        with ThreadPoolExecutor(16) as pool:
            busy = pool.submit(batcher.predict, "slow")
            wait_until_busy(gated)
            futures = [pool.submit(batcher.predict, call) for call in calls]
            wait_for_queue(batcher, 14)
            gated.gate.set()
            busy.result(timeout=60)
            for i, future in enumerate(futures):
                if i == 3:
                    with pytest.raises(PredictionError, match="ValueError: poisoned input"):
                        future.result(timeout=60)
                elif i == 8:
                    with pytest.raises(PredictionError, match="item 1"):
                        future.result(timeout=60)
                else:
                    assert_same(future.result(timeout=60), expected[calls[i]])
    finally:
        batcher.close()
    # the poison really shared a forward pass with companions before being isolated
    assert any(len(b) > 1 and any("POISON" in t for t in b) for b in gated.batches)


class DeduplicatingSentiment(SentimentWrapper):
    """A plugin bug batch splitting used to hide: identical texts in one batch get one output."""

    def predict_batch(self, items: list[str]) -> list[Any]:
        return super().predict_batch(list(dict.fromkeys(items)))


def test_a_batch_with_dropped_results_is_an_error_naming_the_plugin(tiny_models) -> None:
    wrapper = DeduplicatingSentiment(source=str(tiny_models["sentiment"]), device="cpu").ensure_loaded()
    assert wrapper.run_batch(["fine"]) == SentimentWrapper.run_batch(wrapper, ["fine"])  # alone, it works
    batcher = started(wrapper, max_batch_size=8)
    try:
        with pytest.raises(PredictionError) as caught:
            batcher.predict(["same text", "same text", "other"])
    finally:
        batcher.close()
    assert str(caught.value) == (
        "model 'sentiment' failed: plugin bug: test_batching.DeduplicatingSentiment.predict_batch returned 2 "
        "outputs for 3 inputs; it must return exactly one output per input, in order")


def test_close_fails_queued_work_and_refuses_new_work(gated) -> None:
    batcher = started(gated)
    gated.gate.clear()
    with ThreadPoolExecutor(3) as pool:
        busy = pool.submit(batcher.predict, "slow")
        wait_until_busy(gated)
        queued = pool.submit(batcher.predict, "waiting")
        wait_for_queue(batcher, 1)
        closer = pool.submit(batcher.close)
        with pytest.raises(ModelNotReadyError, match="shutting down"):
            queued.result(timeout=60)
        gated.gate.set()
        closer.result(timeout=60)
        assert busy.result(timeout=60)["label"] in {"POSITIVE", "NEGATIVE"}
    with pytest.raises(ModelNotReadyError):
        batcher.predict("late")


def test_calibration_fits_a_positive_cost_model(wrappers) -> None:
    cost = calibrate_cost_model(wrappers["sentiment"], shapes=((1, 4), (4, 16)), repeats=1)
    assert cost.per_token > 0 and cost.overhead >= 0


def test_registry_predicts_through_the_batcher_and_closes_it(tiny_models) -> None:
    config = parse_config({"serve": ["sentiment"], "models": {"sentiment": {"source": str(tiny_models["sentiment"]),
                                                    "batch": {"max_batch_size": 4, "max_queue": 8}}}})
    registry = Registry(config)
    registry.start(background=False)
    batcher = registry.model("sentiment").batcher
    assert batcher.config.max_batch_size == 4 and batcher.config.max_queue == 8
    try:
        direct = registry.wrapper("sentiment").run_batch(TEXTS)
        assert_same(registry.predict("sentiment", TEXTS), direct)
    finally:
        registry.close()
    assert not batcher._thread.is_alive()
    with pytest.raises(ModelNotReadyError):
        registry.predict("sentiment", "after close")


def test_torch_threads_are_configurable_and_validated() -> None:
    before = torch.get_num_threads()
    try:
        assert configure_torch_threads(1) == 1 and torch.get_num_threads() == 1
        assert configure_torch_threads(0) == len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)
    assert parse_config({"server": {"torch_threads": 3}}).server.torch_threads == 3
    with pytest.raises(ConfigError, match="server.torch_threads must be >= 0"):
        parse_config({"server": {"torch_threads": -1}})


def test_an_idle_inference_thread_gives_its_openmp_workers_back_once_per_rest(gated, monkeypatch) -> None:
    released: list[str] = []
    monkeypatch.setattr(openmp, "release_thread_pool", lambda: released.append(threading.current_thread().name))
    batcher = started(gated)
    try:
        wait_for(lambda: released, what="the release after starting idle")
        for rest in (2, 3):
            assert batcher.predict("Great!") == gated.predict_batch(["Great!"])[0]
            wait_for(lambda: len(released) == rest, what=f"release number {rest}")
            time.sleep(5 * IDLE_POOL_RELEASE_SECONDS)
            assert released == [batcher._thread.name] * rest  # the inference thread's own, once per rest
    finally:
        batcher.close()


def test_work_that_would_make_an_accepted_request_late_is_refused(gated) -> None:
    """The next round sorts by length, so a newcomer may run before an earlier, longer text:
    admission refuses what would push the earliest queued deadline past, and only that."""
    gated.cost_model = CostModel(overhead=0.0, per_token=0.01)  # 100 tokens (400 characters): 1 s
    batcher = started(gated, max_batch_size=8, max_queue=64)
    batcher._pricer.scale, batcher._pricer.tokens_per_char = 1.0, 0.25
    gated.gate.clear()
    try:
        with ThreadPoolExecutor(4) as pool:
            holding = pool.submit(batcher.submit, ["slow"])
            wait_until_busy(gated)
            first = pool.submit(batcher.submit, ["a" * 400], 1.5)  # 1 s of work, due in 1.5 s
            wait_for_queue(batcher, 1)
            assert batcher._earliest_deadline == pytest.approx(time.monotonic() + 1.5, abs=0.2)
            with pytest.raises(OverloadedError, match="without making requests it accepted late"):
                batcher.submit(["b" * 200], 30)  # 0.5 s more: the first would end after 1.5 s
            short = pool.submit(batcher.submit, ["c" * 40], 30)  # 0.1 s more: both in time
            wait_for_queue(batcher, 2)
            gated.gate.set()
            assert len(first.result(timeout=30)) == 1 and len(short.result(timeout=30)) == 1
            holding.result(timeout=30)
        assert batcher._earliest_deadline == math.inf  # drained
    finally:
        gated.gate.set()
        batcher.close()


def test_a_planned_round_is_priced_by_its_plan(gated) -> None:
    """Before a round is planned its price is the pricer's guess from characters; once planned,
    it is the plan's cost model seconds scaled by what plans really took, which it then teaches."""
    gated.cost_model = CostModel(overhead=0.5, per_token=0.0)  # one pass of both texts: 0.5 s planned
    batcher = started(gated, max_batch_size=8)
    batcher._plan_price.scale = 2.0  # plans have taken twice their cost
    gated.gate.clear()
    try:
        with ThreadPoolExecutor(1) as pool:
            both = pool.submit(batcher.submit, ["slow a", "slow b"])
            wait_until_busy(gated)
            assert batcher._round_seconds == pytest.approx(2.0 * 0.5)
            time.sleep(0.1)
            gated.gate.set()
            assert len(both.result(timeout=30)) == 2
    finally:
        gated.gate.set()
        batcher.close()
    # the round took 0.1-0.3 s of its 0.5 planned: the scale moves a fifth of the way towards that
    assert 0.8 * 2.0 + 0.2 * 0.2 < batcher._plan_price.scale < 0.8 * 2.0 + 0.2 * 0.6


def test_a_queued_request_already_too_late_holds_no_one_back(gated) -> None:
    gated.cost_model = CostModel(overhead=0.0, per_token=0.01)
    batcher = Batcher(gated, BatchConfig(max_queue=64, max_batch_size=8))
    batcher._pricer.scale, batcher._pricer.tokens_per_char = 1.0, 0.25
    batcher._queue.append(None)  # one queued text of 400 characters: 1 s of work
    batcher._queued_weight = batcher._pricer.weight(gated.cost_model, 400)
    batcher._earliest_deadline = time.monotonic() + 0.5  # due before it can run
    newcomer = batcher._pricer.weight(gated.cost_model, 40)  # 0.1 s
    assert batcher._admission_error(1, 1, newcomer, 30.0) is None
    batcher._earliest_deadline = time.monotonic() + 1.05  # in time unless something joins it
    assert "accepted late" in str(batcher._admission_error(1, 1, newcomer, 30.0))


def test_the_predicted_wait_counts_the_rest_of_the_round_and_the_whole_next_one(gated) -> None:
    """Work queued now runs after the running round and the pause the next round may take to
    regroup, in a round that also takes what arrives meanwhile (sorted by length, any of it may
    come first), so all of it counts, up to a full queue, priced by the weights of the texts."""
    batcher = Batcher(gated, BatchConfig(max_queue=64, max_batch_size=8, regroup_wait=0.1))
    gated.cost_model = CostModel(overhead=0.1, per_token=0.001)
    short = batcher._pricer.weight(gated.cost_model, 40)  # an eighth of a pass's 0.1 s and 10 tokens: 0.0225
    assert short == pytest.approx(0.0225)
    assert batcher.predicted_wait(10, 10 * short) == 0.0  # nothing measured yet: nothing to scale by
    batcher._pricer.scale, batcher._pricer.tokens_per_char = 1.0, 0.25
    assert batcher.predicted_wait(10, 10 * short) == pytest.approx(0.225)  # idle: the texts alone
    batcher._round_seconds, batcher._round_started = 2.0, time.monotonic() - 1.0  # 1 s of a 2 s round left
    batcher._queue.extend([None] * 10)  # 10 items queued in the round's first second
    # 1 s left, a pause of a tenth of the round (0.2 s), then 11 ahead and the 12 expected in those
    # 1.2 s, each the size of those ahead: 23 texts of 0.0225
    assert batcher.predicted_wait(11, 11 * short) == pytest.approx(1.0 + 0.2 + 23 * 0.0225, abs=0.05)
    batcher._queue.extend([None] * 30)  # 40 queued in 1 s: 48 more expected before the next round
    # 41 ahead + 48 expected is more than a round can hold: a full queue, 64 texts
    assert batcher.predicted_wait(41, 41 * short) == pytest.approx(1.0 + 0.2 + 64 * 0.0225, abs=0.05)
    # the same number of texts, ten times longer, waits longer
    long = batcher._pricer.weight(gated.cost_model, 400)
    assert batcher.predicted_wait(41, 41 * long) > batcher.predicted_wait(41, 41 * short) + 5
    # a text longer than the model reads weighs what it is truncated to: 4,000 characters, 128 tokens
    assert gated.max_length == 128
    huge = batcher._pricer.weight(gated.cost_model, 4000)
    assert huge == pytest.approx(0.0125 + 0.128)
    # once rounds have measured a typical item, what is expected to arrive is priced at that size,
    # not at the size of what is ahead: the long text and 48 typical ones, not 49 long ones
    batcher._pricer.weight_per_item = short
    assert batcher.predicted_wait(1, huge) == pytest.approx(1.0 + 0.2 + 0.1405 + 48 * 0.0225, abs=0.05)
    assert batcher.predicted_wait(1, huge, arrivals=False) == pytest.approx(1.0 + 0.2 + 0.1405, abs=0.05)
    # once work was refused the next round will not pause
    batcher._turned_away = True
    assert batcher.predicted_wait(1, huge, arrivals=False) == pytest.approx(1.0 + 0.1405, abs=0.05)
