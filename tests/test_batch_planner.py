"""The length-aware planner: exact optimum, valid partitions, and the cost-model fit."""

from __future__ import annotations

import itertools
import random

import pytest

from modeldeploy.batch_planner import (
    DEFAULT_TOKENS_PER_CHAR,
    CostModel,
    LearnedPrice,
    WorkPricer,
    fit_cost_model,
    plan_batches,
)


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


def test_the_pricer_weighs_each_text_by_the_rows_and_tokens_it_fills() -> None:
    """A text weighs its share of a pass's overhead per row plus the padded tokens of its rows;
    its tokens are estimated from its characters, and a text read in windows fills a full row
    for each."""
    cost = CostModel(overhead=0.01, per_token=0.001)
    plain = WorkPricer(max_rows=4)
    assert plain.weight(cost, 400) == pytest.approx(0.01 / 4 + 0.001 * 400 * DEFAULT_TOKENS_PER_CHAR)
    windows = WorkPricer(max_rows=4, shape_of=lambda tokens: (1, tokens) if tokens <= 100 else (3, 100))
    assert windows.weight(cost, 400) == pytest.approx(0.01 / 4 + 0.001 * 100)  # 100 tokens: one row
    assert windows.weight(cost, 404) == pytest.approx(3 * 0.01 / 4 + 0.001 * 3 * 100)  # 101: three full rows
    windows.observe_round(items=2, weight=0.2, seconds=0.4, chars=100, tokens=50)
    assert windows.tokens_per_char == 0.5  # learned from the one-row texts: 200 characters now fill a window
    assert windows.weight(cost, 200) == pytest.approx(0.01 / 4 + 0.001 * 100)


def test_the_pricer_scales_weights_by_what_rounds_really_took() -> None:
    pricer = WorkPricer(max_rows=4)
    assert pricer.seconds(0.21) == 0.0  # before any round there is nothing to scale by
    pricer.observe_round(items=4, weight=0.21, seconds=0.42, chars=400, tokens=200)
    assert pricer.tokens_per_char == 0.5 and pricer.weight_per_item == pytest.approx(0.21 / 4)
    assert pricer.scale == pytest.approx(2.0)  # the round took twice its weight
    assert pricer.seconds(0.21) == pytest.approx(0.42)
    assert pricer.seconds(2.01) == pytest.approx(4.02)  # heavier work costs more
    assert pricer.seconds(0.0) == 0.0
    pricer.observe_round(items=1, weight=0.0525, seconds=0.091875)  # a lone text: no tokens counted
    assert pricer.tokens_per_char == 0.5
    # it took 1.75 x its weight: the scale moves a fifth of the way
    assert pricer.scale == pytest.approx(0.8 * 2.0 + 0.2 * 1.75)
    scale, typical = pricer.scale, pricer.weight_per_item
    pricer.observe_round(items=0, weight=0.1, seconds=1.0)  # nothing to learn from
    pricer.observe_round(items=1, weight=0.0, seconds=1.0)
    assert (pricer.scale, pricer.weight_per_item) == (scale, typical)


def test_the_price_adds_twice_the_recent_excess_of_work_over_its_price() -> None:
    """A price is a promise to a deadline: work that runs past its price raises the next prices."""
    price = LearnedPrice()
    price.observe(0.11, 0.22)  # 2 s per unit
    price.observe(0.11, 0.11)  # half its price: no excess
    assert price.excess == 0.0
    assert price.seconds(0.11) == pytest.approx(price.mean_seconds(0.11))
    scale = price.scale
    assert scale == pytest.approx(0.8 * 2.0 + 0.2 * 1.0)
    price.observe(0.11, scale * 0.11 * 1.5)  # 50 % over its price
    assert price.excess == pytest.approx(0.2 * 0.5)
    assert price.seconds(0.11) == pytest.approx(price.mean_seconds(0.11) * (1 + 2 * 0.1))
    assert price.mean_seconds(0.11) == pytest.approx(price.scale * 0.11)
    excess = price.excess
    price.observe(0.11, price.scale * 0.11 * 50)  # a stall
    assert price.excess == pytest.approx(0.8 * excess + 0.2 * 1.0)  # counts as twice its price, no more
    price.observe(0.0, 1.0)  # a lone text: no plan to learn from
    assert price.excess == pytest.approx(0.8 * excess + 0.2 * 1.0)
