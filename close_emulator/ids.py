"""Stable Close-looking ids for the emulator's configured objects (users, statuses, fields,
groups, sequences...): derived from a name, so they are the same from one run to the next."""

from __future__ import annotations

import hashlib
from typing import Any

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def derived_id(prefix: str, text: str) -> str:
    """A stable Close-looking id (``prefix`` + 43 base62 chars) derived from ``text``."""
    number = int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")
    chars = []
    for _ in range(43):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return prefix + "".join(chars)


def with_derived_id(value: Any, prefix: str, source: str) -> Any:
    """A model's raw input with ``id`` derived from its ``source`` key when no id is given
    (ids stay the same from one run to the next; emails compared in any case)."""
    if isinstance(value, dict) and not value.get("id") and isinstance(value.get(source), str):
        text = value[source].casefold() if source == "email" else value[source]
        value = {**value, "id": derived_id(prefix, text)}
    return value
