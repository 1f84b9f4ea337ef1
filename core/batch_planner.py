"""Length-aware batch planning: which texts share a padded forward pass.

Padding every text to the longest in its batch wastes compute on mixed-length inputs, while many
tiny batches pay the per-call overhead again and again. A forward pass of ``rows`` texts padded to
``max_len`` tokens costs about ``a + b * rows * max_len``; :func:`plan_batches` sorts items by
length and splits them into contiguous groups minimising the total of that cost (exact dynamic
programming: with sorted lengths some optimal partition is contiguous). Pure functions, shared by
the server's batcher and ``ModelWrapper.predict``. :class:`WorkPricer` turns the same cost model
into seconds for work not yet planned (what admission compares with a request's deadline), and
:class:`LearnedPrice` the cost of a plan into seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CostModel:
    """Seconds for one padded forward pass: ``overhead + per_token * rows * max_len``."""

    overhead: float = 0.002
    per_token: float = 0.00002

    def cost(self, rows: int, max_len: int) -> float:
        return self.overhead + self.per_token * rows * max_len


def plan_batches(lengths: Sequence[int], max_rows: int, cost: CostModel | None = None) -> list[list[int]]:
    """Partition item indices into batches of at most ``max_rows``, minimising total cost.

    Returns lists of indices into ``lengths``; each batch is in ascending length order and the
    batches are ordered from shortest to longest.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    model = cost or CostModel()
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest plan for the j shortest items
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        longest = max(lengths[order[end - 1]], 1)
        for start in range(max(0, end - max_rows), end):
            total = best[start] + model.cost(end - start, longest)
            if total < best[end]:
                best[end], cut[end] = total, start
    batches: list[list[int]] = []
    end = n
    while end > 0:
        batches.append(order[cut[end] : end])
        end = cut[end]
    return batches[::-1]


def longest_first(costs: Sequence[float], streams: int) -> tuple[list[int], float]:
    """Sub-batches taken by ``streams`` passes at once, each stream taking the next when it is
    free: the order to hand them out in (most expensive first, the classic greedy schedule, not
    always the best one), and when the last one ends, in the units of ``costs``."""
    if streams < 1:
        raise ValueError(f"streams must be >= 1, got {streams}")
    order = sorted(range(len(costs)), key=lambda i: -costs[i])
    loads = [0.0] * streams
    for index in order:
        loads[loads.index(min(loads))] += costs[index]
    return order, max(loads, default=0.0)


def parallel_pays(alone: Sequence[float], at_once: Sequence[float], streams: int) -> bool:
    """Whether sub-batches end sooner run ``streams`` at a time, each costing ``at_once`` (a pass on
    its share of the threads beside the others), than one after another, each costing ``alone``."""
    if streams < 2 or len(alone) < 2:
        return False
    return longest_first(at_once, streams)[1] < sum(alone)


def fit_cost_model(samples: Sequence[tuple[int, int, float]]) -> CostModel:
    """Least-squares fit of ``seconds = a + b * rows * max_len`` from ``(rows, max_len, seconds)`` samples."""
    if len({rows * max_len for rows, max_len, _ in samples}) < 2:
        raise ValueError("fitting needs samples of at least two different sizes")
    xs = [float(rows * max_len) for rows, max_len, _ in samples]
    ys = [seconds for _, _, seconds in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    slope = max(slope, 1e-9)  # noise must not make longer batches look free
    return CostModel(overhead=max(mean_y - slope * mean_x, 0.0), per_token=slope)


#: Tokens per character of prepared text until a round has measured it (English WordPiece: ~0.25).
DEFAULT_TOKENS_PER_CHAR = 0.25
#: Weight of the latest round in the moving averages a :class:`WorkPricer` learns.
SMOOTHING = 0.2
#: A price adds this many times the recent relative excess of rounds over their price.
EXCESS_MARGIN = 2.0
#: The most one round adds to that excess (a stalled round is the stuck detector's business).
MAX_EXCESS = 1.0


class LearnedPrice:
    """Seconds per unit of predicted cost, learned from what the work really took (a moving
    average), with a margin: a price is a promise to a deadline, so it includes how far work has
    recently run past its own price (twice the moving average of the relative excess, work counting
    at most twice its price). Work that is predictable is priced at its mean, work that varies
    above it."""

    def __init__(self) -> None:
        #: Seconds work really took per unit of predicted cost; None before any was measured.
        self.scale: float | None = None
        #: How far work ran past its price, relative to it (moving average; 0 when within it).
        self.excess = 0.0

    def seconds(self, units: float) -> float:
        """Predicted seconds of work of ``units``, with its margin (0 before any work was
        measured: nothing to scale by)."""
        return self.mean_seconds(units) * (1 + EXCESS_MARGIN * self.excess)

    def mean_seconds(self, units: float) -> float:
        """Predicted seconds of work of ``units``, without a margin."""
        return 0.0 if self.scale is None else self.scale * units

    def observe(self, units: float, seconds: float) -> None:
        """Learn from work of ``units`` that took ``seconds``."""
        if units <= 0 or seconds <= 0:
            return
        if self.scale is not None:  # work past twice its price (a stall) counts as twice
            over = seconds / (self.scale * units) - 1
            self.excess = _smooth(self.excess, min(MAX_EXCESS, max(0.0, over)))
        self.scale = _smooth(self.scale, seconds / units)


class WorkPricer(LearnedPrice):
    """Seconds a round of queued texts will take, before they are tokenized or planned.

    Admission must price a queue in microseconds, so it cannot tokenize and plan it. Each text
    is weighed when it is queued, by the fitted cost model: its share of a pass's ``overhead``
    (one ``max_rows``-th per row it fills) plus ``per_token`` times the tokens its rows are padded
    to, its tokens estimated from its characters at the ratio rounds measured and turned into
    rows by ``shape_of`` (the wrapper's ``pass_shape``: a text read in windows fills one full row
    per window). What rounds really took per unit of that weight turns weight into seconds (a
    :class:`LearnedPrice`), so padding, extra sub-batches and the machine's current speed are
    learned rather than assumed. A queue of long texts so costs more than one of short texts,
    which an average per item cannot tell apart; and where the cost model sees no length effect (a
    cost per text), every text weighs the same and the price is the recent cost per item.
    """

    def __init__(self, max_rows: int, shape_of: Callable[[int], tuple[int, int]] = lambda tokens: (1, tokens)) -> None:
        super().__init__()
        self.max_rows = max_rows
        self.shape_of = shape_of
        #: Tokens per character of the one-row texts rounds counted (moving average); None before any.
        self.tokens_per_char: float | None = None
        #: Weight of a typical text (moving average): the size of a request not yet read.
        self.weight_per_item: float | None = None

    def weight(self, cost: CostModel, chars: int) -> float:
        """The cost-model weight of one text of ``chars`` characters (a queue's is the sum of its texts')."""
        tokens = max(1, round(chars * (self.tokens_per_char or DEFAULT_TOKENS_PER_CHAR)))
        rows, length = self.shape_of(tokens)
        return cost.overhead * rows / self.max_rows + cost.per_token * rows * length

    def observe_round(self, items: int, weight: float, seconds: float, chars: int = 0, tokens: int = 0) -> None:
        """Learn from a round of ``items`` texts of ``weight`` in all that took ``seconds``, in which
        texts of ``chars`` characters, each in one row, were counted to hold ``tokens`` tokens."""
        if items <= 0 or seconds <= 0 or weight <= 0:
            return
        if tokens and chars:
            self.tokens_per_char = _smooth(self.tokens_per_char, tokens / chars)
        self.weight_per_item = _smooth(self.weight_per_item, weight / items)
        self.observe(weight, seconds)


def _smooth(previous: float | None, latest: float) -> float:
    return latest if previous is None else (1 - SMOOTHING) * previous + SMOOTHING * latest
