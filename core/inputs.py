"""Validation of what users send: the texts given to ``predict`` and the JSON bodies HTTP clients post.

Everything hostile is refused here with a precise error (``InvalidInputError``/``InputTypeError``,
a 400 over HTTP) before any expensive work: JSON nested deeper than :data:`MAX_JSON_DEPTH` (Python's
decoder would raise ``RecursionError``), numbers longer than :data:`MAX_NUMBER_DIGITS` (``int()``
of thousands of digits raises, and huge integers make arithmetic slow), and lone UTF-16 surrogates
(an escape like ``"\\ud800"`` decodes fine but fails when a tokenizer or an encoder meets it).
Bodies must be UTF-8 (RFC 8259); NaN, Infinity and numbers past the float range are not JSON.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import InputTypeError, InvalidInputError

#: Deepest nesting of arrays and objects in a JSON body: far beyond any real request (an OIP
#: tensor's data nests once per dimension), far below Python's recursion limit.
MAX_JSON_DEPTH = 64
#: Most digits in one JSON number: real requests send shapes and sizes; Python refuses ``int()``
#: of more than 4300 digits.
MAX_NUMBER_DIGITS = 1000

_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")  # json.loads joins valid pairs, so any left is lone
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
#: Raw bytes with every digit as b"9" and anything else as b"\0": a long number is then a plain substring.
_DIGIT_MARKS = bytes(0x39 if 0x30 <= byte <= 0x39 else 0 for byte in range(256))
_LONG_RUN = b"9" * (MAX_NUMBER_DIGITS + 1)
#: What the depth and number scan looks at: strings (a key when a colon follows), brackets, and
#: long numbers (matched from a run's first digit only, so the scan stays linear).
_TOKEN = re.compile(rf'"[^"\\]*(?:\\.[^"\\]*)*"?(\s*:)?|[\[{{]|[\]}}]|(?<![0-9])[0-9]{{{MAX_NUMBER_DIGITS + 1},}}',
                    re.DOTALL)


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _unicode_problem(text: str) -> str | None:
    """Why ``text`` cannot be encoded (a lone surrogate), or None when it is valid Unicode."""
    found = _LONE_SURROGATE.search(text)
    if found is None:
        return None
    return (f"is not valid Unicode text: lone surrogate U+{ord(found.group()):04X} at index {found.start()}; "
            "send characters beyond U+FFFF as UTF-8 or as a surrogate pair")


def normalize_texts(data: Any) -> tuple[list[str], bool]:
    """Return ``(texts, was_single)``; raise a precise error for anything else."""
    if isinstance(data, str):
        _check_text(data, "data")
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
            _check_text(item, f"data[{index}]")
        return list(data), False
    raise InputTypeError(f"data must be a string or a list of strings, got {_type_name(data)}")


def _check_text(text: str, where: str) -> None:
    problem = _unicode_problem(text)
    if problem is not None:
        raise InvalidInputError(f"{where} {problem}")


# --------------------------------------------------------------------------- JSON bodies
def decode_json(raw: bytes, what: str = "request body") -> Any:
    """``raw`` (UTF-8 JSON) as Python, within the limits above; InvalidInputError naming the problem."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{what} is not valid JSON: it is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    _check_depth_and_numbers(raw, text, what)
    try:
        document = json.loads(text, parse_constant=lambda name: _no_constant(name, what),
                              parse_float=lambda literal: _finite_float(literal, what))
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{what} is not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(text):  # the only way a lone surrogate gets into strictly decoded UTF-8
        _check_strings(document, what)
    return document


def _no_constant(name: str, what: str) -> Any:
    raise InvalidInputError(f"{what} is not valid JSON: {name} is not a JSON number")


def _finite_float(literal: str, what: str) -> float:
    """Like NaN and Infinity, a number past the float range (``1e999`` would be inf) is refused."""
    value = float(literal)
    if not math.isfinite(value):
        raise InvalidInputError(f"{what} has a number out of the 64-bit float range: {literal[:40]}")
    return value


def _check_depth_and_numbers(raw: bytes, text: str, what: str) -> None:
    """Refuse deep nesting and long numbers by scanning ``text``, before the decoder recurses."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH and _LONG_RUN not in raw.translate(_DIGIT_MARKS):
        return  # the common case, decided at C speed on the raw bytes
    depth, key = 0, ""
    for token in _TOKEN.finditer(text):
        first = token.group()[0]
        if first == '"':
            if depth == 1 and token.group(1):
                key = text[token.start() : token.start(1)]
        elif first in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise InvalidInputError(f"{_subject(what, key)} nests arrays and objects more than "
                                        f"{MAX_JSON_DEPTH} levels deep, at {_place(text, token.start())}")
        elif first in "]}":
            depth -= 1
        else:
            raise InvalidInputError(f"{_subject(what, key)} has a number with {len(token.group())} digits in a row, "
                                    f"at most {MAX_NUMBER_DIGITS} are accepted, at {_place(text, token.start())}")


def _subject(what: str, key_literal: str) -> str:
    """``request body field data``: the top-level field (from its JSON literal) the problem is in."""
    if not key_literal:
        return what
    try:
        key = json.loads(key_literal)
    except ValueError:
        return f"{what} field {_shorten(key_literal)}"
    return f"{what} field '{_child_path('', key)}'"


def _place(text: str, position: int) -> str:
    """Where ``position`` is, the way ``json`` says it: ``line 1 column 9 (char 8)``."""
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    return f"line {line} column {column} (char {position})"


def _check_strings(document: Any, what: str) -> None:
    """Every string (keys included) must be valid Unicode; the error names the field, e.g. ``inputs[0].id``."""
    pending: list[tuple[Any, str]] = [(document, "")]
    while pending:
        value, path = pending.pop()
        if isinstance(value, str):
            problem = _unicode_problem(value)
            if problem is not None:
                raise InvalidInputError(f"{what} field '{path}' {problem}" if path else f"{what} {problem}")
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                problem = _unicode_problem(key)
                if problem is not None:
                    raise InvalidInputError(f"{what} has a key in {repr(path) if path else 'the top-level object'} "
                                            f"that {problem}")
                pending.append((item, _child_path(path, key)))
        elif isinstance(value, list):
            pending.extend((item, f"{path}[{index}]") for index, item in reversed(list(enumerate(value))))


def _child_path(path: str, key: str) -> str:
    """``inputs`` then ``inputs[0].data``; odd keys as ``["a key"]``."""
    if key.isidentifier() and len(key) <= 80:
        return f"{path}.{key}" if path else key
    return f"{path}[{_shorten(json.dumps(key))}]"


def _shorten(shown: str) -> str:
    """At most 80 characters of a key in a message: a hostile key may be a megabyte long."""
    return shown if len(shown) <= 80 else shown[:77] + "..."
