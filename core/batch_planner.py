"""Length-aware batch planning: which texts share a padded forward pass.

Padding every text to the longest in its batch wastes compute on mixed-length inputs, while many
tiny batches pay the per-call overhead again and again. A forward pass of ``rows`` texts padded to
``max_len`` tokens costs about ``a + b * rows * max_len``; :func:`plan_batches` sorts items by
length and splits them into contiguous groups minimising the total of that cost (exact dynamic
programming: with sorted lengths some optimal partition is contiguous). Pure functions, shared by
the server's batcher and ``ModelWrapper.predict``.
"""

from __future__ import annotations

from collections.abc import Sequence
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
