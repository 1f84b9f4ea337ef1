"""Several passes of one model at once on a CPU: the streams, when a round uses them, and who may."""

from __future__ import annotations

import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch
from modeldeploy_ner import NerWrapper
from modeldeploy_sentiment import SentimentWrapper
from modeldeploy_summarization import SummarizationWrapper
from same_results import assert_same
from waiting import wait_for

from modeldeploy.batch_planner import CostModel, longest_first, parallel_pays
from modeldeploy.batching import Batcher, calibrate_cost_model
from modeldeploy.config import BatchConfig
from modeldeploy.pass_streams import PassStreams
from modeldeploy.tasks import TextClassificationWrapper
from modeldeploy.tasks.translation import TranslationWrapper

#: Every text alone in its sub-batch, priced by its tokens: rounds of several sub-batches.
SINGLES = CostModel(overhead=0.0, per_token=1.0)


def threads_in_new_thread() -> int:
    """torch's intra-op thread count a thread starting now gets."""
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


# ---------------------------------------------------------------------- the schedule
def test_longest_first_orders_by_cost_and_fills_the_least_loaded_stream() -> None:
    order, makespan = longest_first([1.0, 5.0, 3.0, 3.0], streams=2)
    assert order == [1, 2, 3, 0]
    assert makespan == 6.0  # 5 + 1 on one stream, 3 + 3 on the other
    assert longest_first([2.0, 2.0, 2.0], streams=1) == ([0, 1, 2], 6.0)
    with pytest.raises(ValueError, match="streams must be >= 1"):
        longest_first([1.0], streams=0)


@pytest.mark.parametrize(
    ("alone", "at_once", "streams", "pays"),
    [
        ([1.0, 1.0], [1.7, 1.7], 2, True),  # balanced: 1.7 < 2
        ([1.0, 1.0], [2.1, 2.1], 2, False),  # each pass slower than the pair one after another
        ([10.0, 1.0], [17.0, 1.7], 2, False),  # one long pass: it alone outlasts both in turn
        ([1.0, 1.0, 1.0, 1.0], [1.7] * 4, 2, True),
        ([1.0], [0.1], 2, False),  # a lone sub-batch has nothing to share the CPU with
        ([1.0, 1.0], [0.1, 0.1], 1, False),
    ],
)
def test_parallel_pays_only_when_the_streams_end_sooner(alone, at_once, streams, pays) -> None:
    assert parallel_pays(alone, at_once, streams) is pays


# ---------------------------------------------------------------------- the streams
@pytest.fixture
def streams():
    running = PassStreams(2, 1, "test").start()
    yield running
    running.close()


def test_jobs_run_at_once_each_on_its_own_thread_count(streams) -> None:
    meeting = threading.Barrier(2, timeout=10)  # broken unless both jobs run at the same time
    seen: dict[int, tuple[str, int]] = {}

    def job(index: int) -> None:
        meeting.wait()
        seen[index] = (threading.current_thread().name, torch.get_num_threads())

    times = streams.run([lambda: job(0), lambda: job(1)])
    assert {name for name, _ in seen.values()} == {"modeldeploy-stream-test-0", "modeldeploy-stream-test-1"}
    assert [threads for _, threads in seen.values()] == [1, 1]
    assert all(started <= ended for started, ended in times) and len(times) == 2


def test_starting_streams_leaves_the_default_for_new_threads_as_it_was() -> None:
    before = threads_in_new_thread()
    running = PassStreams(2, 1, "default").start()
    try:
        assert threads_in_new_thread() == before
    finally:
        running.close()


def test_a_failing_job_is_raised_after_the_others_have_ended(streams) -> None:
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.2)
        finished.set()

    def failing() -> None:
        raise ValueError("bad pass")

    with pytest.raises(ValueError, match="bad pass"):
        streams.run([slow, failing])
    assert finished.is_set()
    assert len(streams.run([lambda: None, lambda: None])) == 2  # the streams still work


def test_idle_streams_keep_no_job_alive(streams) -> None:
    """A stream waiting for work holds neither its last pass (and so its model) nor a failure's
    traceback: a retired model version is freed as soon as its batcher lets go of it."""

    class Job:
        def __init__(self, fails: bool) -> None:
            self.fails = fails

        def __call__(self) -> None:
            if self.fails:
                raise ValueError("bad pass")

    jobs = [Job(False), Job(True)]
    gone = [weakref.ref(job) for job in jobs]
    with pytest.raises(ValueError):
        streams.run(jobs)
    del jobs
    assert [ref() for ref in gone] == [None, None]  # freed by their reference counts, no collection needed


def test_one_stream_takes_the_jobs_in_the_order_given() -> None:
    running = PassStreams(1, 1, "order").start()
    ran: list[int] = []
    try:
        running.run([lambda i=i: ran.append(i) for i in (3, 1, 2)])
    finally:
        running.close()
    assert ran == [3, 1, 2]


def test_an_idle_stream_rests_once_per_rest_on_its_own_thread() -> None:
    rests: list[str] = []
    running = PassStreams(2, 1, "resting", rest=(0.05, lambda: rests.append(threading.current_thread().name)))
    running.start()
    try:
        wait_for(lambda: len(rests) == 2, what="both streams resting")
        time.sleep(0.3)  # still idle: no second rest
        assert sorted(rests) == ["modeldeploy-stream-resting-0", "modeldeploy-stream-resting-1"]
        meeting = threading.Barrier(2, timeout=10)  # one job each: both streams work, then rest again
        running.run([meeting.wait, meeting.wait])
        wait_for(lambda: len(rests) == 4, what="both streams resting again")
    finally:
        running.close()


def test_closed_streams_end_and_refuse_work() -> None:
    running = PassStreams(2, 1, "closing").start()
    running.close()
    for thread in running._threads:
        thread.join(5)
        assert not thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        running.run([lambda: None])


@pytest.mark.parametrize(("count", "threads_each"), [(0, 1), (2, 0)])
def test_streams_need_a_thread_each(count, threads_each) -> None:
    with pytest.raises(ValueError, match="count >= 1 and threads_each >= 1"):
        PassStreams(count, threads_each, "x")


# ---------------------------------------------------------------------- who may run passes at once
class MeetingSentiment(SentimentWrapper):
    """The tiny sentiment model, recording the thread each pass ran on; with a ``meeting`` set,
    passes wait for each other there (so they must run at once)."""

    concurrent_passes = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.meeting: threading.Barrier | None = None
        self.threads: list[str] = []

    def predict_batch(self, items: list[str]) -> list[Any]:
        self.threads.append(threading.current_thread().name)
        if self.meeting is not None:
            self.meeting.wait()
        return super().predict_batch(items)


@pytest.fixture
def meeting(tiny_models) -> MeetingSentiment:
    wrapper = MeetingSentiment(source=str(tiny_models["sentiment"]), device="cpu").ensure_loaded()
    wrapper.cost_model = SINGLES
    return wrapper


def test_a_round_of_balanced_sub_batches_runs_them_at_once(meeting) -> None:
    texts = ["fine " * 20, "fine " * 21]  # apart, as the cost says; nearly as long: balanced
    expected = [meeting.run_batch([text])[0] for text in texts]
    meeting.threads.clear()
    meeting.meeting = threading.Barrier(2, timeout=20)  # broken unless both passes run at once
    batcher = Batcher(meeting, BatchConfig(streams=2)).start(calibrate=False)
    try:
        assert_same(batcher.submit(texts), expected)
    finally:
        batcher.close()
    assert sorted(meeting.threads) == ["modeldeploy-stream-sentiment-0", "modeldeploy-stream-sentiment-1"]


def test_a_lone_pass_and_an_unbalanced_round_run_on_the_inference_thread(meeting) -> None:
    batcher = Batcher(meeting, BatchConfig(streams=2)).start(calibrate=False)
    try:
        batcher.submit(["a short one"])
        # a text far longer than the other: run apart, it alone would outlast both in turn
        batcher.submit(["tiny", "a much longer text " * 30])
    finally:
        batcher.close()
    assert meeting.threads == ["modeldeploy-batcher-sentiment"] * 3


def test_concurrent_clients_get_their_own_answers_from_parallel_rounds(meeting) -> None:
    texts = [f"review number {i}: " + "good " * (i % 5) + "bad " * (i % 3) for i in range(24)]
    expected = {text: meeting.run_batch([text])[0] for text in texts}
    batcher = Batcher(meeting, BatchConfig(streams=2)).start(calibrate=False)
    try:
        with ThreadPoolExecutor(len(texts)) as pool:
            answers = dict(zip(texts, pool.map(lambda text: batcher.submit([text])[0], texts)))
    finally:
        batcher.close()
    for text in texts:
        assert_same(answers[text], expected[text])
    assert any(name.startswith("modeldeploy-stream-") for name in meeting.threads)


def test_calibration_prices_a_pass_on_a_stream(meeting) -> None:
    running = PassStreams(2, 1, "calibration").start()
    try:
        cost = calibrate_cost_model(meeting, streams=running)
    finally:
        running.close()
    assert cost.per_token > 0
    assert set(meeting.threads) == {"modeldeploy-stream-calibration-0", "modeldeploy-stream-calibration-1"}


def test_a_model_that_may_not_run_passes_at_once_gets_no_streams(tiny_models, caplog) -> None:
    class Overriding(SentimentWrapper):
        def predict_batch(self, items: list[str]) -> list[Any]:
            return super().predict_batch(items)

    wrapper = Overriding(source=str(tiny_models["sentiment"]), device="cpu").ensure_loaded()
    batcher = Batcher(wrapper, BatchConfig(streams=2)).start(calibrate=False)
    try:
        assert batcher._streams is None
    finally:
        batcher.close()
    assert "batch.streams is 2, but its passes run one at a time (its task does not allow more)" in caplog.text


def test_a_subclass_overriding_the_pass_must_opt_in_again() -> None:
    class Overriding(TextClassificationWrapper):
        def predict_batch(self, items: list[str]) -> list[Any]:
            return []

    class OptingIn(Overriding):
        concurrent_passes = True

        def postprocess(self, output: Any) -> Any:
            return output

    class Inheriting(OptingIn):
        pass

    assert TextClassificationWrapper.concurrent_passes and SentimentWrapper.concurrent_passes
    assert not Overriding.concurrent_passes
    assert OptingIn.concurrent_passes and Inheriting.concurrent_passes
    assert TranslationWrapper.concurrent_passes  # overrides predict_batch and says so itself


def test_only_torch_on_the_cpu_runs_passes_at_once(tiny_models) -> None:
    wrapper = SentimentWrapper(source=str(tiny_models["sentiment"]), device="cpu").ensure_loaded()
    assert wrapper.runs_concurrent_passes()
    wrapper.device = "cuda"
    assert not wrapper.runs_concurrent_passes()
    wrapper.device = "cpu"
    wrapper.settings = {**wrapper.settings, "runtime": "onnxruntime"}
    assert not wrapper.runs_concurrent_passes()


@pytest.mark.parametrize("cls", [SentimentWrapper, NerWrapper, SummarizationWrapper])
def test_passes_at_once_give_the_results_of_passes_in_turn(tiny_models, cls) -> None:
    """Two threads run passes of one wrapper at once while a third measures token lengths (the
    tokenizer with other settings), over and over: every result as a pass alone gives it."""
    name = {SentimentWrapper: "sentiment", NerWrapper: "ner", SummarizationWrapper: "summarization"}[cls]
    wrapper = cls(source=str(tiny_models[name]), device="cpu").ensure_loaded()
    texts = wrapper.prepare_texts([
        "Angela Merkel met Emmanuel Macron in Paris on Tuesday.",
        "This was a terrible waste of time and money, and the story made no sense at all.",
        "Apple opened offices in London.",
    ])
    expected = [wrapper.run_prepared([text])[0] for text in texts]
    stop = threading.Event()

    def measure() -> None:
        while not stop.is_set():
            wrapper.token_lengths(texts)

    def passes(offset: int) -> list[Any]:
        return [wrapper.run_prepared([texts[(offset + i) % 3]])[0] for i in range(12)]

    with ThreadPoolExecutor(3) as pool:
        measuring = pool.submit(measure)
        results = list(pool.map(passes, (0, 1)))
        stop.set()
        measuring.result()
    for offset, got in zip((0, 1), results):
        assert_same(got, [expected[(offset + i) % 3] for i in range(12)])


class SlowToConvert(SentimentWrapper):
    """The tiny sentiment model whose load holds on after setting ``self.model`` (as a conversion
    after ``load`` does), recording whether each pass saw the load finished."""

    concurrent_passes = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.finished = False
        self.passes_saw_finished: list[bool] = []

    def load(self, source: str, device: str) -> None:
        super().load(source, device)
        assert self.gate.wait(30)
        self.finished = True

    def predict_batch(self, items: list[str]) -> list[Any]:
        self.passes_saw_finished.append(self.finished)
        return super().predict_batch(items)


def test_a_pass_waits_for_a_load_in_progress_even_without_the_pass_lock(tiny_models) -> None:
    wrapper = SlowToConvert(source=str(tiny_models["sentiment"]), device="cpu")
    with ThreadPoolExecutor(2) as pool:
        loading = pool.submit(wrapper.ensure_loaded)
        wait_for(lambda: wrapper.model is not None, what="the model set, its load not finished")
        passing = pool.submit(wrapper.run_batch, ["fine"])
        time.sleep(0.3)  # a pass that did not wait would run now, on the unfinished model
        wrapper.gate.set()
        loading.result(30)
        assert len(passing.result(30)) == 1
    assert wrapper.passes_saw_finished == [True]
