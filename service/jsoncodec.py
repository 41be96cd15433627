"""JSON on the hot paths: orjson where it gives the same result as the standard library.

orjson parses and writes JSON several times faster than :mod:`json`, which the receiver does
for every request (the body, the envelope, the answer). It differs from :mod:`json` in a few
corners, and there the standard library is used instead, so stored values never change:

- an integer past 64 bits: orjson reads it as a float (precision lost), so a document with a
  float that large is parsed again by :mod:`json`;
- text orjson refuses (a lone surrogate escape, ``NaN``, ``1e400``, nesting past 1,024 levels,
  bytes that are not UTF-8) goes to :mod:`json`, which gives the error message or value the
  caller already handles;
- writing: an integer past 64 bits or a string with a lone surrogate makes orjson refuse, and
  :mod:`json` writes it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# orjson reads an integer past 64 bits as a float; every such float is at least this large.
_BIG = 2.0**63


def maybe_lost_integer(number: float) -> bool:
    """True for a float orjson may have made of an integer past 64 bits (the standard library
    keeps those exact); also true for a genuine float that large, which costs only a re-parse."""
    return not -_BIG <= number < _BIG


def _has_big_float(value: Any) -> bool:
    # A loop, not recursion: orjson nests up to 1,024 levels, past Python's recursion limit.
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, float):
            if maybe_lost_integer(node):
                return True
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789{", b"0" * 10 + b"[")
"""Digits read as ``0``, ``{`` as ``[``: one pass over the text gives both its runs of digits
and its count of opening brackets."""
_NINETEEN_DIGITS = b"0" * 19
"""A text with no run of 19 digits holds no integer past 64 bits (2**63 has 19 digits), so
orjson's numbers are :mod:`json`'s (looking costs about 1 us per KB)."""


def loads(raw: bytes | str) -> Any:
    """Parse JSON text; same result as ``json.loads`` for every document both accept."""
    value = fast_loads(raw)
    return json.loads(raw) if value is UNPARSED else value


def fast_loads(raw: bytes | str) -> Any:
    """orjson's parse when it is :mod:`json`'s, else :data:`UNPARSED` (orjson refused the
    text, or may have read an integer past 64 bits as a float): the caller then parses with
    the standard library its own way."""
    return fast_loads_counted(raw)[0]


def fast_loads_counted(raw: bytes | str) -> tuple[Any, int]:
    """:func:`fast_loads`, and the count of ``[`` and ``{`` in the text (the most the document
    can nest), from the same pass that looks for big integers; ``(UNPARSED, 0)`` as there."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return UNPARSED, 0
    text = (raw.encode() if isinstance(raw, str) else raw).translate(_DIGITS_AS_ZERO)
    if text.find(_NINETEEN_DIGITS) >= 0 and _has_big_float(value):
        return UNPARSED, 0
    return value, text.count(b"[")


UNPARSED: Any = object()
"""What :func:`fast_loads` returns when the standard library must parse the text."""


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON (no ASCII escaping), as ``json.dumps(..., separators=(",", ":"),
    ensure_ascii=False, sort_keys=sort_keys)`` writes it, but for float spelling (``1e-7``
    for ``1e-07``)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except TypeError:  # orjson.JSONEncodeError: a big integer, a lone surrogate
        pass
    compact = (",", ":")
    try:
        return json.dumps(
            value, separators=compact, ensure_ascii=False, sort_keys=sort_keys
        ).encode()
    except UnicodeEncodeError:  # a lone surrogate: written as its \u escape
        return json.dumps(value, separators=compact, sort_keys=sort_keys).encode()
