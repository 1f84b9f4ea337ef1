"""Validation of what users pass to ``predict``: one string or a non-empty list of strings."""

from __future__ import annotations

from typing import Any

from .errors import InputTypeError, InvalidInputError


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def normalize_texts(data: Any) -> tuple[list[str], bool]:
    """Return ``(texts, was_single)``; raise a precise error for anything else."""
    if isinstance(data, str):
        return [data], True
    if isinstance(data, (list, tuple)):
        if not data:
            raise InvalidInputError("data must be a string or a non-empty list of strings; got an empty list")
        for index, item in enumerate(data):
            if not isinstance(item, str):
                raise InputTypeError(
                    f"data[{index}] must be a string, got {_type_name(item)}"
                    + (" (nested lists are not accepted)" if isinstance(item, (list, tuple)) else "")
                )
        return list(data), False
    raise InputTypeError(f"data must be a string or a list of strings, got {_type_name(data)}")
