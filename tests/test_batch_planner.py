"""The length-aware planner: exact optimum, valid partitions, and the cost-model fit."""

from __future__ import annotations

import itertools
import random

import pytest

from modeldeploy.batch_planner import DEFAULT_TOKENS_PER_CHAR, CostModel, WorkPricer, fit_cost_model, plan_batches


def plan_cost(batches, lengths, cost: CostModel) -> float:
    """Estimated seconds to run ``batches``, each padded to its longest item (the planner's objective)."""
    return sum(cost.cost(len(b), max(max(lengths[i] for i in b), 1)) for b in batches if b)


def _partitions(items: list[int]):
    """Every set partition of ``items`` (brute force for small cases)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in _partitions(rest):
        for i in range(len(partition)):
            yield partition[:i] + [[first] + partition[i]] + partition[i + 1 :]
        yield [[first]] + partition


@pytest.mark.parametrize("seed", range(12))
def test_plan_is_optimal_against_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(1, 60) for _ in range(rng.randint(1, 7))]
    max_rows = rng.randint(1, 4)
    cost = CostModel(overhead=rng.choice([0.0, 5.0, 40.0, 500.0]), per_token=1.0)
    plan = plan_batches(lengths, max_rows, cost)
    best = min(
        plan_cost(p, lengths, cost)
        for p in _partitions(list(range(len(lengths))))
        if all(len(b) <= max_rows for b in p)
    )
    assert plan_cost(plan, lengths, cost) == pytest.approx(best)


def test_plan_is_a_partition_within_max_rows_and_sorted() -> None:
    rng = random.Random(7)
    lengths = [rng.randint(3, 80) for _ in range(200)]
    plan = plan_batches(lengths, 16, CostModel(overhead=0.01, per_token=0.0001))
    assert sorted(itertools.chain.from_iterable(plan)) == list(range(200))
    assert all(1 <= len(batch) <= 16 for batch in plan)
    flat = [lengths[i] for batch in plan for i in batch]
    assert flat == sorted(lengths)


def test_overhead_decides_between_few_and_many_batches() -> None:
    lengths = [5, 5, 5, 50, 50, 50]
    free_calls = plan_batches(lengths, 6, CostModel(overhead=0.0, per_token=1.0))
    costly_calls = plan_batches(lengths, 6, CostModel(overhead=1e6, per_token=1.0))
    assert len(costly_calls) == 1
    assert all(len({lengths[i] for i in b}) == 1 for b in free_calls)  # no short text padded to 50
    assert plan_cost(free_calls, lengths, CostModel(0.0, 1.0)) == 3 * 5 + 3 * 50


def test_empty_and_invalid_inputs() -> None:
    assert plan_batches([], 4) == []
    with pytest.raises(ValueError, match="max_rows"):
        plan_batches([1, 2], 0)


def test_fit_recovers_a_linear_cost() -> None:
    truth = CostModel(overhead=0.004, per_token=0.00003)
    samples = [(r, n, truth.cost(r, n)) for r, n in [(1, 10), (1, 60), (8, 10), (8, 60), (32, 40)]]
    fitted = fit_cost_model(samples)
    assert fitted.overhead == pytest.approx(truth.overhead)
    assert fitted.per_token == pytest.approx(truth.per_token)


def test_fit_needs_two_sizes_and_never_makes_tokens_free() -> None:
    with pytest.raises(ValueError, match="two different sizes"):
        fit_cost_model([(2, 10, 0.1), (4, 5, 0.1)])
    noisy = fit_cost_model([(1, 10, 0.5), (8, 60, 0.1)])  # decreasing: noise, not physics
    assert noisy.per_token > 0 and noisy.overhead >= 0


def test_the_pricer_scales_the_cost_model_by_what_rounds_really_took() -> None:
    """Each text weighs its share of a pass's overhead plus its tokens' cost; rounds teach what a
    unit of weight takes."""
    pricer = WorkPricer(max_rows=4)
    cost = CostModel(overhead=0.01, per_token=0.001)
    assert pricer.seconds(cost, 4, 400) == 0.0  # before any round there is nothing to scale by
    assert pricer.estimate(cost, 4, 400) == pytest.approx(0.01 + 0.001 * 400 * DEFAULT_TOKENS_PER_CHAR)
    pricer.observe(cost, rows=4, chars=400, tokens=200, seconds=0.42)
    assert pricer.tokens_per_char == 0.5 and pricer.chars_per_item == 100
    # the estimate of that round was 0.01 + 0.001 x 200 = 0.21 s; it took twice as long
    assert pricer.scale == pytest.approx(2.0)
    assert pricer.seconds(cost, 4, 400) == pytest.approx(0.42)
    assert pricer.seconds(cost, 4, 4000) == pytest.approx(2 * (0.01 + 2.0))  # longer texts cost more
    assert pricer.seconds(cost, 5, 400) == pytest.approx(0.42 + 2 * 0.01 / 4)  # a fifth row: its share of a pass
    assert pricer.seconds(cost, 0, 0) == 0.0
    pricer.observe(cost, rows=1, chars=100, tokens=None, seconds=0.091875)  # a lone text is not counted
    assert pricer.tokens_per_char == 0.5
    # its weight was 0.01 / 4 + 0.001 x 50 = 0.0525, it took 1.75 x that: the scale moves a fifth of the way
    assert pricer.scale == pytest.approx(0.8 * 2.0 + 0.2 * 1.75)


def test_the_price_adds_twice_the_recent_excess_of_rounds_over_their_price() -> None:
    """A price is a promise to a deadline: rounds that run past theirs raise the next prices."""
    pricer = WorkPricer(max_rows=4)
    cost = CostModel(overhead=0.01, per_token=0.001)
    pricer.observe(cost, rows=4, chars=400, tokens=100, seconds=0.22)  # weight 0.11: 2 s per unit
    pricer.observe(cost, rows=4, chars=400, tokens=100, seconds=0.11)  # half its price: no excess
    assert pricer.excess == 0.0
    assert pricer.seconds(cost, 4, 400) == pytest.approx(pricer.mean_seconds(cost, 4, 400))
    scale = pricer.scale
    assert scale == pytest.approx(0.8 * 2.0 + 0.2 * 1.0)
    pricer.observe(cost, rows=4, chars=400, tokens=100, seconds=scale * 0.11 * 1.5)  # 50 % over its price
    assert pricer.excess == pytest.approx(0.2 * 0.5)
    assert pricer.seconds(cost, 4, 400) == pytest.approx(pricer.mean_seconds(cost, 4, 400) * (1 + 2 * 0.1))
    assert pricer.mean_seconds(cost, 4, 400) == pytest.approx(pricer.scale * 0.11)
    excess = pricer.excess
    pricer.observe(cost, rows=4, chars=400, tokens=100, seconds=pricer.scale * 0.11 * 50)  # a stall
    assert pricer.excess == pytest.approx(0.8 * excess + 0.2 * 1.0)  # counts as twice its price, no more
