"""The ideal window's arithmetic: a padded batch's cost fitted to timed forward passes, and the
cheapest way to split a window of arrivals sorted by length.

This is the bench's own, independent of modeldeploy's batch planner: the reference it yields is
what the best possible planner would do with what one window of C clients sends, so it must not
share that planner's assumptions (or its bugs).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Cost:
    """Seconds of one padded batch of ``rows`` texts of ``length`` tokens: a fixed part, and per
    row a constant part, a part linear in the length (the dense layers) and a quadratic one
    (attention). All terms are non-negative, so a longer or larger batch never costs less."""

    fixed: float = 0.0
    per_row: float = 0.0
    per_token: float = 0.0
    per_token_squared: float = 0.0

    def __call__(self, rows: int, length: int) -> float:
        return self.fixed + rows * (self.per_row + self.per_token * length + self.per_token_squared * length**2)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def fit(samples: Sequence[tuple[int, int, float]]) -> tuple[Cost, float]:
    """The non-negative :class:`Cost` closest to ``(rows, length, seconds)`` samples in relative
    error, and that fit's median relative error. With four terms an exact search over which
    terms are zero is cheap and needs no optimiser."""
    features = np.array([[1.0, rows, rows * length, rows * length**2] for rows, length, _ in samples])
    seconds = np.array([s for _, _, s in samples])
    weighted, target = features / seconds[:, None], np.ones(len(samples))  # relative error
    best: tuple[float, np.ndarray] | None = None
    for count in range(1, 5):
        for columns in itertools.combinations(range(4), count):
            solution, *_ = np.linalg.lstsq(weighted[:, columns], target, rcond=None)
            if (solution < 0).any():
                continue
            residual = float(np.sum((weighted[:, columns] @ solution - target) ** 2))
            if best is None or residual < best[0]:
                coefficients = np.zeros(4)
                coefficients[list(columns)] = solution
                best = (residual, coefficients)
    assert best is not None, "a single non-negative term always fits"
    cost = Cost(*(float(c) for c in best[1]))
    errors = [abs(cost(rows, length) - s) / s for rows, length, s in samples]
    return cost, float(np.median(errors))


def cheapest_split(lengths: Sequence[int], cost: Cost) -> list[int]:
    """Sizes of the contiguous sub-batches of ``lengths`` (sorted ascending) whose total cost is
    least: an exact dynamic programme over where each sub-batch ends (its longest text sets its
    padding, so only contiguous runs of the sorted window can be optimal)."""
    count = len(lengths)
    best, start = [0.0] + [math.inf] * count, [0] * (count + 1)
    for end in range(1, count + 1):
        for begin in range(end):
            total = best[begin] + cost(end - begin, lengths[end - 1])
            if total < best[end]:
                best[end], start[end] = total, begin
    sizes = []
    end = count
    while end:
        sizes.append(end - start[end])
        end = start[end]
    return sizes[::-1]
