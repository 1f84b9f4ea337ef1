"""Adaptive batching of concurrent ``predict`` calls for one model.

Serving one forward pass per HTTP request wastes the hardware; padding every text of a batch to
the longest one eats most of the batching gain. A :class:`Batcher` owns one inference thread and,
on a CPU where the model allows it, pass streams (:mod:`modeldeploy.pass_streams`) that run a
round's sub-batches two at a time where its cost models say they end sooner. Each round
it drains everything queued (a lone request runs at once unless ``max_wait_ms`` asks to wait for
companions; right after a busy round it may wait briefly to regroup, see :meth:`Batcher._drain`),
measures each text's rows and token lengths once (``ModelWrapper.pass_shapes``), and runs the
cost-minimising padded sub-batches of :func:`~modeldeploy.batch_planner.plan_batches`, answering
each request as soon as its last item is done. It receives texts already validated and prepared
by the caller's thread (:meth:`Batcher.submit`) and never touches them again before the forward
pass.

Admission happens at once, before anything is queued: a full queue, or a predicted wait (the
rest of the running round and the whole next one, priced by the fitted cost model on the queued
texts' lengths and scaled by what rounds really took; see :meth:`Batcher.predicted_wait` and
:class:`~modeldeploy.batch_planner.WorkPricer`) longer than the request's deadline, or one that
would make work already accepted late (the next round sorts by length, so a newcomer may run
before an earlier, longer text), answers "overloaded" (HTTP 503) rather than work that would come
too late. Items whose deadline passed while queued are dropped before they are computed (HTTP 504), and
so are those of a caller that cancelled (an HTTP client that hung up: see :mod:`modeldeploy.cancellation`).
A round running past the model's timeout is reported (:meth:`Batcher.overdue_round_seconds`) so the
model can be marked stuck. An exception is bisected down to the item(s) that caused it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import metrics, openmp
from .batch_planner import (
    CostModel,
    LearnedPrice,
    WorkPricer,
    fit_cost_model,
    longest_first,
    parallel_pays,
    plan_batches,
)
from .cancellation import Cancellation
from .config import BatchConfig
from .errors import (
    BatcherRetiredError,
    ModelDeployError,
    ModelNotReadyError,
    OverloadedError,
    PluginContractError,
    PredictionError,
    PredictionTimeoutError,
    RequestCancelledError,
)
from .inputs import normalize_texts
from .pass_streams import PassStreams
from .wrapper import ModelWrapper

log = logging.getLogger(__name__)

#: (rows, words) shapes timed to fit the cost model: small and large in both dimensions.
CALIBRATION_SHAPES = ((1, 8), (1, 48), (8, 8), (8, 48))

#: Idle this long, an inference thread gives its OpenMP workers back (see :mod:`modeldeploy.openmp`):
#: long enough that a busy model never pays the ~0.5 ms of building them again, short enough that
#: a model resting between bursts stops slowing the others.
IDLE_POOL_RELEASE_SECONDS = 0.1

#: How much longer a pass takes on a stream's share of the threads, while the other streams run
#: too, than alone on all of them, until calibration measures it (the MiniLM classifier on 2 cores:
#: 1.35x for one short text, 1.7-1.8x for 8-32 rows of 20-50 words, 2x for long texts).
DEFAULT_STREAM_SLOWDOWN = 1.8

#: How long a request the HTTP front let through counts as queued until a task thread takes it:
#: long enough for a thread to get to it in a storm, bounded so that one which never arrives (its
#: client hung up) stops counting.
RESERVATION_SECONDS = 1.0


@dataclass(eq=False)
class _Request:
    """One ``submit`` call: its results fill in as its items complete."""

    size: int
    deadline: float
    results: list[Any] = field(default_factory=list)
    error: ModelDeployError | None = None
    remaining: int = 0
    abandoned: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.results = [None] * self.size
        self.remaining = self.size

    @property
    def live(self) -> bool:
        return not self.abandoned and time.monotonic() < self.deadline


@dataclass(eq=False)
class _Item:
    request: _Request
    index: int
    #: The prepared text (``ModelWrapper.prepare_texts`` ran on the caller's thread).
    text: str
    #: What the pricer weighed it at when it was queued.
    weight: float


@dataclass(frozen=True)
class _RoundSummary:
    """What the regrouping wait of the next round needs to know about the last one."""

    answered: int = 0
    #: Items already queued when the round ended.
    queued_at_end: int = 0
    ended: float = 0.0
    duration: float = 0.0
    #: Items answered before the round's last sub-batch began: their clients may be among the
    #: queued ones already.
    answered_early: int = 0


class Batcher:
    """Batches concurrent predictions for one loaded wrapper on one inference thread."""

    def __init__(self, wrapper: ModelWrapper, config: BatchConfig | None = None, name: str | None = None) -> None:
        self.wrapper = wrapper
        self.config = config or BatchConfig()
        self.name = name or wrapper.name
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._retiring = False
        self._thread: threading.Thread | None = None
        self._last_round = _RoundSummary()
        #: Prices queued work in seconds, learning from each round.
        self._pricer = WorkPricer(self.config.max_batch_size, wrapper.pass_shape)
        #: The pricer's weight of the items queued.
        self._queued_weight = 0.0
        #: Turns the cost model's seconds for a round's plan into real seconds (a planned round
        #: is priced far closer than one still in the queue).
        self._plan_price = LearnedPrice()
        #: The earliest deadline (monotonic) of the requests queued; inf when none is.
        self._earliest_deadline = math.inf
        #: When the running round started (None between rounds) and its predicted seconds (the
        #: pricer's, then its plan's once it is planned).
        self._round_started: float | None = None
        self._round_seconds = 0.0
        #: Work was refused since the last round was drained: more is offered than the model can
        #: take, so the next round does not wait for companions (see :meth:`_drain`).
        self._turned_away = False
        #: When each request let through by :meth:`refusal` with ``reserve`` stops counting as
        #: queued (monotonic, oldest first), unless :meth:`end_reservation` ends it first.
        self._reservations: deque[float] = deque()
        #: Passes run at once for rounds of several sub-batches (None: one at a time; see
        #: :mod:`modeldeploy.pass_streams`).
        self._streams: PassStreams | None = None
        #: The cost of a pass on a stream while every stream runs one; None: the wrapper's cost
        #: model times DEFAULT_STREAM_SLOWDOWN.
        self._stream_cost: CostModel | None = None
        #: torch's intra-op threads for the inference thread's own passes.
        self._threads = 1
        #: Answers may come from several streams at once.
        self._answer_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def start(self, calibrate: bool = True) -> "Batcher":
        """Fit the wrapper's cost model (on this thread, before serving), start the pass streams
        where the model can use them, and start the inference thread."""
        import torch

        self.wrapper.ensure_loaded()
        self._threads = torch.get_num_threads()
        self._streams = self._start_streams()
        if calibrate:
            try:
                self.wrapper.cost_model = calibrate_cost_model(self.wrapper)
                log.info("model %s cost model: %s", self.name, self.wrapper.cost_model)
                if self._streams is not None:
                    self._stream_cost = calibrate_cost_model(self.wrapper, streams=self._streams)
                    log.info("model %s: %d passes at once, each costing %s", self.name, self._streams.count,
                             self._stream_cost)
            except Exception as exc:  # a model failing on its example still serves other inputs
                log.warning("model %s: cost calibration failed (%s: %s); using the default cost model",
                            self.name, type(exc).__name__, exc)
        self._thread = threading.Thread(target=self._serve, name=f"modeldeploy-batcher-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _start_streams(self) -> PassStreams | None:
        """Pass streams for ``batch.streams`` (0: two where the model allows it and torch has two
        threads or more), None for one pass at a time."""
        allowed = self.wrapper.runs_concurrent_passes()
        count = self.config.streams or (min(2, self._threads) if allowed else 1)
        if count > 1 and not allowed:
            log.warning("model %s: batch.streams is %d, but its passes run one at a time (%s)", self.name, count,
                        "its task does not allow more" if not self.wrapper.concurrent_passes
                        else f"it runs on {self.wrapper.device} with runtime {self.wrapper.settings.get('runtime')}")
        if count <= 1 or not allowed:
            return None
        threads_each = max(1, self._threads // count)
        rest = (IDLE_POOL_RELEASE_SECONDS, openmp.release_thread_pool) if threads_each > 1 else None
        return PassStreams(count, threads_each, self.name, rest).start()

    def retire(self, timeout: float | None = 60.0) -> None:
        """Refuse new work but finish everything already queued, then stop: how a model version
        leaves service without failing a request it accepted (a swap, an unload). What is still
        queued after ``timeout`` seconds fails as in :meth:`close`."""
        with self._cond:
            self._retiring = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self.close(timeout=0)

    def close(self, timeout: float | None = 10.0) -> None:
        """Refuse new work, fail what is still queued, finish the running round, stop the thread."""
        with self._cond:
            self._stopping = True
            pending, self._queue = list(self._queue), deque()
            self._queued_weight, self._earliest_deadline = 0.0, math.inf
            self._cond.notify_all()
        for request in {item.request for item in pending}:
            request.error = ModelNotReadyError(f"model {self.name!r} is shutting down")
            request.done.set()
        self._set_depth(0)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._streams is not None:
            self._streams.close()

    # ------------------------------------------------------------------ callers' side
    def predict(self, data: str | Sequence[str], timeout: float | None = None) -> Any:
        """Like ``ModelWrapper.predict`` (one string or a list), through the batching queue:
        validates and prepares ``data`` on this thread, then :meth:`submit`."""
        texts, single = normalize_texts(data)
        results = self.submit(self.wrapper.prepare_texts(texts), timeout)
        return results[0] if single else results

    def refusal(self, timeout: float | None = None, reserve: bool = False) -> OverloadedError | None:
        """The error a one-text request with ``timeout`` would get now, judged before its texts are
        read (no lock: a stale view only moves one request either side of the limit), so the
        HTTP front can refuse it before parsing its body; its size is taken to be a typical item's.

        With ``reserve``, a request let through counts as queued until :meth:`end_reservation`
        says one has reached a task thread (or for RESERVATION_SECONDS): when a retry storm opens,
        hundreds of requests are judged before the first of them is queued, and judged by the
        queue alone, all would pass, wait for task threads, and be refused only then, slowly."""
        now = time.monotonic()
        while self._reservations and self._reservations[0] <= now:
            with contextlib.suppress(IndexError):  # end_reservation() may have taken it meanwhile
                self._reservations.popleft()
        weight = self._pricer.weight_per_item or 0.0
        refusal = self._admission_error(len(self._queue), 1, weight, self.deadline_seconds(timeout),
                                        reserved=len(self._reservations))
        if refusal is not None:
            self._turned_away = True
        elif reserve:
            self._reservations.append(now + RESERVATION_SECONDS)
        return refusal

    def end_reservation(self) -> None:
        """A request let through with ``reserve`` has reached a thread, which judges it again
        against the queue itself: the oldest reservation ends (any one: they are alike)."""
        with contextlib.suppress(IndexError):  # none left, or refusal() expired it meanwhile
            self._reservations.popleft()

    def deadline_seconds(self, timeout: float | None) -> float:
        """A request's time limit: the model's ``timeout``, lowered (never raised) by the client's."""
        return self.config.timeout if timeout is None else min(timeout, self.config.timeout)

    def predicted_wait(self, items_ahead: int, weight_ahead: float, arrivals: bool = True) -> float:
        """Seconds before work queued behind ``items_ahead`` items weighing ``weight_ahead`` (its
        own included) would be answered, priced by :class:`~modeldeploy.batch_planner.WorkPricer`.

        Work queued now runs in the round after the running one, with whatever else arrives
        before that round starts; the round sorts its items by length, so any of them may come
        first. So the wait is what is left of the running round (its predicted seconds, less
        those spent), the pause the next round may take to regroup (none once work was refused:
        see :meth:`_drain`), plus the whole next round: the items ahead and those expected to arrive
        meanwhile (at the rate the queue filled since the running round began, up to a full queue;
        not counted with ``arrivals=False``). An expected arrival is priced at the size of a
        typical item (what rounds measured; before any, the items ahead's average), not at that of
        the items ahead: just after a round starts the rate is steep, and one long text ahead
        would otherwise be priced as a queue of copies of itself.
        """
        started = self._round_started
        if started is None:
            return self._pricer.seconds(weight_ahead)
        elapsed = time.monotonic() - started
        round_left = max(0.0, self._round_seconds - elapsed)
        if not self._turned_away:  # the next round may wait for companions first
            round_left += self.config.regroup_wait * self._round_seconds
        arriving = len(self._queue) / elapsed * round_left if elapsed > 0 and arrivals else 0.0
        arriving = min(arriving, max(0, self.config.max_queue - items_ahead))
        typical = self._pricer.weight_per_item or (weight_ahead / items_ahead if items_ahead else 0.0)
        return round_left + self._pricer.seconds(weight_ahead + arriving * typical)

    def _admission_error(self, queued: int, size: int, weight: float, timeout: float,
                         reserved: int = 0) -> OverloadedError | None:
        """Why ``size`` more items weighing ``weight`` cannot be taken behind ``queued`` and
        ``reserved`` on their way, or None: the queue is full (a request always fits an empty
        queue), the predicted wait exceeds the request's deadline (an idle model takes anything:
        only its own items are ahead), or the next round, with these items in it, would end after
        the earliest deadline of the queued requests, which it would otherwise meet."""
        if queued + reserved and queued + reserved + size > self.config.max_queue:
            coming = f", {reserved} on their way" if reserved else ""
            return OverloadedError(f"model {self.name!r} is overloaded ({queued} items queued{coming}, max_queue "
                                   f"{self.config.max_queue}); retry later", retry_after=1)
        if not queued and self._round_started is None:
            return None
        wait = self.predicted_wait(queued + size, self._queued_weight + weight)
        if wait > timeout:
            return OverloadedError(
                f"model {self.name!r} cannot answer within the request's deadline ({timeout:g} s): about "
                f"{wait:.1f} s of work comes first; retry later or allow more time",
                retry_after=max(1, math.ceil(wait - timeout)))
        if not queued:
            return None
        # later arrivals are judged when they come: what is queued now, with and without these
        # items; a request already too late to save does not hold the others back
        until_earliest = self._earliest_deadline - time.monotonic()
        with_these = self.predicted_wait(queued + size, self._queued_weight + weight, arrivals=False)
        if with_these > until_earliest >= self.predicted_wait(queued, self._queued_weight, arrivals=False):
            return OverloadedError(
                f"model {self.name!r} cannot take more work without making requests it accepted late (the "
                f"earliest is due in {max(0.0, until_earliest):.1f} s); retry later",
                retry_after=max(1, math.ceil(until_earliest)))
        return None

    def overdue_round_seconds(self) -> float | None:
        """How long the running round has been computing, when that is longer than ``timeout``
        (every request in it has timed out: the plugin may hang); None otherwise."""
        started = self._round_started
        if started is None:
            return None
        running = time.monotonic() - started
        return running if running > self.config.timeout else None

    def submit(self, prepared: Sequence[str], timeout: float | None = None,
               cancellation: Cancellation | None = None) -> list[Any]:
        """Queue prepared texts (``wrapper.prepare_texts`` of validated ones), wait for their
        results (in order) or raise.

        Raises OverloadedError when the queue cannot take them (a request always fits an empty
        queue), PredictionTimeoutError after ``timeout`` seconds (default: the config's),
        PredictionError when the model failed on one of these texts, and RequestCancelledError
        when ``cancellation`` is cancelled first (its items leave the queue at once).
        """
        if not prepared:
            return []
        timeout = self.deadline_seconds(timeout)
        request = _Request(size=len(prepared), deadline=time.monotonic() + timeout)
        with self._cond:
            if self._retiring:
                raise BatcherRetiredError(f"model {self.name!r}: this version was retired")
            if self._stopping or self._thread is None:
                raise ModelNotReadyError(f"model {self.name!r} is not serving", retry_after=5)
            cost = self.wrapper.cost_model
            weights = [self._pricer.weight(cost, len(text)) for text in prepared]
            refusal = self._admission_error(len(self._queue), len(prepared), sum(weights), timeout)
            if refusal is not None:
                self._turned_away = True
                metrics.ITEMS.labels(self.name, "rejected").inc(len(prepared))
                raise refusal
            self._queue.extend(_Item(request, i, text, weight)
                               for i, (text, weight) in enumerate(zip(prepared, weights)))
            self._queued_weight += sum(weights)
            self._earliest_deadline = min(self._earliest_deadline, request.deadline)
            self._set_depth(len(self._queue))
            self._cond.notify()
        unregister = cancellation.on_cancel(lambda: self._cancel(request)) if cancellation else None
        try:
            finished = request.done.wait(timeout)
        finally:
            if unregister is not None:
                unregister()
        if not finished and self._abandon(request):
            raise PredictionTimeoutError(
                f"model {self.name!r} did not answer within {timeout:g}s; the request was dropped"
            )
        if request.error is not None:
            raise request.error
        return request.results

    def _abandon(self, request: _Request) -> bool:
        """Take ``request``'s items out of the queue unless it was answered; True if abandoned."""
        with self._cond:
            if request.done.is_set():
                return False
            request.abandoned = True
            before = len(self._queue)
            self._queue = deque(item for item in self._queue if item.request is not request)
            self._queued_weight = sum(item.weight for item in self._queue)
            self._earliest_deadline = min((item.request.deadline for item in self._queue), default=math.inf)
            self._set_depth(len(self._queue))
        if before > len(self._queue):
            metrics.ITEMS.labels(self.name, "dropped").inc(before - len(self._queue))
        return True

    def _cancel(self, request: _Request) -> None:
        """The caller went away: free its place in the queue and wake it with the reason (items
        already in the running round are skipped before their sub-batch)."""
        if self._abandon(request):
            request.error = RequestCancelledError(
                f"model {self.name!r}: the caller went away before its answer was computed; its items were dropped")
            request.done.set()

    # ------------------------------------------------------------------ inference thread
    def _serve(self) -> None:
        import torch

        torch.set_num_threads(self._threads)  # whatever default this thread would have started with
        while True:
            if not self._wait_for_work(IDLE_POOL_RELEASE_SECONDS):
                openmp.release_thread_pool()
                self._wait_for_work(None)
            items = self._drain()
            if items is None:
                return
            try:
                self._run_round(items)
            except Exception as exc:  # never let the thread die: fail this round's requests
                log.exception("batcher of model %s failed a round", self.name)
                for item in items:
                    self._fail(item, exc)

    def _wait_for_work(self, timeout: float | None) -> bool:
        """Wait until something is queued or the batcher stops (True), or ``timeout`` passes idle (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._queue) or self._stopping or self._retiring, timeout)

    def _drain(self) -> list[_Item] | None:
        """Wait for work; take everything queued, after waiting for companions where it pays.

        A lone request on an idle model runs at once (``max_wait_ms`` can ask every round to wait).
        Right after a round that answered N items, those clients are likely to send again within
        milliseconds: a round started on the first few to return, or on the Q items that queued
        during the round, leaves the rest waiting a whole round. When a forward pass costs nearly
        the same for 4 rows as for 32 (generation does), clients split that way stay split
        (rounds of 1 and 7, or 4 and 4, at 8 clients) and the small rounds waste most of their
        cost. So until N + Q items (at most ``max_batch_size``) are queued, the batcher waits up
        to ``regroup_wait`` times the last round's duration, counted from its end: at most 10%
        more latency by default, and nothing at all once the model has been idle that long.
        Items answered by the round's earlier sub-batches may have come back during its last one:
        up to that many of the Q are the N's own clients, not others, and are not counted twice
        (counted twice, 4 clients made every round wait its whole window for companions that
        could not come: 3 ms of every 29 ms round of the classifier). Once work has been refused
        since the last round was drained, no round waits: more is offered than the model takes,
        and a pause would only idle it (and make the accepted work later than it was priced).
        """
        with self._cond:
            while not self._queue and not self._stopping and not self._retiring:
                self._cond.wait()
            if self._stopping or not self._queue:  # closed, or retired with nothing left to answer
                return None
            last = self._last_round
            wait_until = time.monotonic() + self.config.max_wait_ms / 1000
            regroup_until = 0.0 if self._turned_away else last.ended + self.config.regroup_wait * last.duration
            others = max(0, last.queued_at_end - last.answered_early)
            expected = min(last.answered + others, self.config.max_batch_size)
            while len(self._queue) < self.config.max_batch_size and not (self._stopping or self._retiring):
                deadline = max(wait_until, regroup_until) if len(self._queue) < expected else wait_until
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            items, self._queue = list(self._queue), deque()
            self._queued_weight, self._earliest_deadline = 0.0, math.inf
            self._turned_away = False
            self._set_depth(0)
        return items

    def _run_round(self, items: list[_Item]) -> None:
        live = self._drop_expired(items)
        if not live:
            return
        started = time.monotonic()
        weight = sum(item.weight for item in live)
        self._round_seconds = self._pricer.seconds(weight)
        self._round_started = started
        counted, planned, answered_early = (0, 0), 0.0, 0
        try:
            counted, planned, answered_early = self._plan_and_compute(live)
        finally:
            ended = time.monotonic()
            with self._cond:
                self._last_round = _RoundSummary(len(live), len(self._queue), ended, ended - started,
                                                 answered_early)
                self._round_started = None
                self._pricer.observe_round(len(live), weight, ended - started, *counted)
                self._plan_price.observe(planned, ended - started)

    def _plan_and_compute(self, live: list[_Item]) -> tuple[tuple[int, int], float, int]:
        """Run the round's sub-batches; the characters and tokens of the one-row texts it counted
        to plan them (none for a lone item, which needs no plan: it is not tokenized twice), the
        cost model's seconds for the plan it ran (0 for a lone item), and the items answered
        before its last sub-batch began."""
        wrapper = self.wrapper
        shapes, counted = [(1, 0)], (0, 0)
        if len(live) > 1:
            shapes = wrapper.pass_shapes([item.text for item in live])
            one_row = [(len(item.text), length) for item, (filled, length) in zip(live, shapes) if filled == 1]
            counted = (sum(chars for chars, _ in one_row), sum(tokens for _, tokens in one_row))
        rows, lengths = zip(*shapes)
        # a text in several windows is in a sub-batch padded to the full window whatever the plan,
        # so its extra rows change no plan, only what its sub-batch costs
        batches = plan_batches(lengths, self.config.max_batch_size, wrapper.cost_model)
        passes = [(sum(rows[i] for i in batch), max(lengths[batch[-1]], 1)) for batch in batches]
        alone = [wrapper.cost_model.cost(*shape) for shape in passes]
        planned = sum(alone) if len(live) > 1 else 0.0
        if self._streams is not None and len(batches) > 1:
            at_once = [self._stream_pass_cost(*shape) for shape in passes]
            if parallel_pays(alone, at_once, self._streams.count):
                planned = longest_first(at_once, self._streams.count)[1]
                self._price_plan(planned)
                answered_early = self._compute_at_once([[live[i] for i in batch] for batch in batches], at_once)
                return counted, planned, answered_early
        self._price_plan(planned)
        for batch in batches:
            self._compute_live([live[i] for i in batch])
        return counted, planned, len(live) - len(batches[-1])

    def _price_plan(self, planned: float) -> None:
        """Once the running round is planned, its price is its plan's (when rounds have taught how
        plans compare with what they really take)."""
        if planned > 0 and self._plan_price.scale is not None:
            self._round_seconds = self._plan_price.seconds(planned)

    def _compute_at_once(self, batches: list[list[_Item]], costs: list[float]) -> int:
        """Run the sub-batches on the pass streams, the most expensive first; the items answered
        before the last sub-batch to end began."""
        assert self._streams is not None
        order, _ = longest_first(costs, self._streams.count)
        chosen = [batches[index] for index in order]
        times = self._streams.run([functools.partial(self._compute_live, items) for items in chosen])
        last_began = max(times, key=lambda span: span[1])[0]
        return sum(len(items) for items, (_, ended) in zip(chosen, times) if ended <= last_began)

    def _stream_pass_cost(self, rows: int, max_len: int) -> float:
        if self._stream_cost is not None:
            return self._stream_cost.cost(rows, max_len)
        return DEFAULT_STREAM_SLOWDOWN * self.wrapper.cost_model.cost(rows, max_len)

    def _compute_live(self, items: list[_Item]) -> None:
        """One sub-batch, less the items whose request is no longer waiting."""
        live = self._drop_expired(items)
        if live:
            self._compute(live)

    def _drop_expired(self, items: list[_Item]) -> list[_Item]:
        live = [item for item in items if item.request.live]
        if len(live) < len(items):
            metrics.ITEMS.labels(self.name, "dropped").inc(len(items) - len(live))
        return live

    def _compute(self, items: list[_Item]) -> None:
        """One padded forward pass; on failure, bisect so only the culprit item(s) fail."""
        try:
            outputs = self.wrapper.run_prepared([item.text for item in items])
        except PluginContractError as exc:  # the plugin's fault, whatever the items: no bisecting it away
            log.error("model %s: %s", self.name, exc)
            for item in items:
                self._fail(item, exc)
            return
        except Exception as exc:
            if len(items) == 1:
                self._fail(items[0], exc)
                return
            middle = len(items) // 2
            self._compute(items[:middle])
            self._compute(items[middle:])
            return
        metrics.BATCH_SIZE.labels(self.name).observe(len(items))
        metrics.ITEMS.labels(self.name, "ok").inc(len(items))
        for item, output in zip(items, outputs):
            item.request.results[item.index] = output
            self._finish(item.request)

    def _fail(self, item: _Item, exc: Exception) -> None:
        metrics.ITEMS.labels(self.name, "error").inc()
        request = item.request
        where = f"item {item.index}" if request.size > 1 else "the input"
        message = (f"model {self.name!r} failed: {exc}" if isinstance(exc, PluginContractError)
                   else f"model {self.name!r} failed on {where}: {type(exc).__name__}: {exc}")
        with self._answer_lock:
            first = request.error is None
            if first:
                request.error = PredictionError(message)
        if first:
            log.warning("model %s failed on %s: %s: %s", self.name, where, type(exc).__name__, exc)
        self._finish(request)

    def _finish(self, request: _Request) -> None:
        with self._answer_lock:
            request.remaining -= 1
            answered = request.remaining == 0
        if answered:
            request.done.set()

    def _set_depth(self, depth: int) -> None:
        metrics.QUEUE_DEPTH.labels(self.name).set(depth)


# ---------------------------------------------------------------------- calibration
def calibrate_cost_model(wrapper: ModelWrapper, shapes: Sequence[tuple[int, int]] = CALIBRATION_SHAPES,
                         repeats: int = 2, streams: PassStreams | None = None) -> CostModel:
    """Time a few real forward passes of ``wrapper`` and fit its padded-batch cost model: of a
    pass alone on this thread, or with ``streams``, of one pass on a stream while every stream
    runs one.

    The first pass warms up and is not timed; each shape keeps its fastest run, the one least
    disturbed by other work on the machine.
    """
    def timed(prepared: list[str]) -> float:
        if streams is None:
            return _timed_run(wrapper, prepared)
        return _span(streams.run([functools.partial(wrapper.run_prepared, prepared)] * streams.count))

    words = (wrapper.example or "the quick brown fox jumps over the lazy dog").split()
    samples = []
    timed(wrapper.prepare_texts(_texts(words, *shapes[0])))
    for rows, word_count in shapes:
        texts = wrapper.prepare_texts(_texts(words, rows, word_count))
        measured = wrapper.pass_shapes(texts)
        seconds = min(timed(texts) for _ in range(repeats))
        samples.append((sum(filled for filled, _ in measured), max(length for _, length in measured), seconds))
    return fit_cost_model(samples)


def _span(times: Sequence[tuple[float, float]]) -> float:
    """Seconds from the first start to the last end of ``(started, ended)`` spans."""
    return max(ended for _, ended in times) - min(started for started, _ in times)


def _timed_run(wrapper: ModelWrapper, prepared: list[str]) -> float:
    """Seconds one ``run_prepared`` of ``prepared`` takes."""
    started = time.perf_counter()
    wrapper.run_prepared(prepared)
    return time.perf_counter() - started


def _texts(words: list[str], rows: int, word_count: int) -> list[str]:
    return [" ".join(itertools.islice(itertools.cycle(words), word_count))] * rows


# ---------------------------------------------------------------------- threads
def configure_torch_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads for serving (0: one per CPU this process may use); returns it.

    One inference thread per model drives torch, so its intra-op pool should span the cores the
    process really has (containers often report the host's count). When another process keeps a
    core busy, threads stall in each other's barriers and fewer threads serve more; the measured
    figures are in docs/architecture.md (``server.torch_threads``; ``bash bench/run.sh
    --threads-check`` measures them again).
    """
    import torch

    if threads <= 0:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads
