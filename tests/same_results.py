"""``assert_same``: two prediction results are equal, floats within what padding changes.
``tests/`` is on ``sys.path``, so ``from same_results import assert_same`` works from any test module."""

from __future__ import annotations

import math
from typing import Any


def assert_same(actual: Any, expected: Any) -> None:
    """Equal structures, floats within tolerance (padding a text with others changes float sums slightly)."""
    if isinstance(expected, float):
        assert math.isclose(actual, expected, rel_tol=1e-4, abs_tol=1e-5), (actual, expected)
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys()
        for key in expected:
            assert_same(actual[key], expected[key])
    elif isinstance(expected, list):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_same(a, e)
    else:
        assert actual == expected
