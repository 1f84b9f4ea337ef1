"""Turn model outputs into plain JSON-able Python (no numpy or torch scalars, no NaN)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def to_jsonable(value: Any) -> Any:
    """Recursively convert numpy/torch scalars and arrays, tuples and non-finite floats."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays/scalars, torch tensors
    if callable(tolist):
        return to_jsonable(tolist())
    item = getattr(value, "item", None)
    if callable(item):
        return to_jsonable(item())
    raise TypeError(f"cannot convert {type(value).__name__} to JSON")
