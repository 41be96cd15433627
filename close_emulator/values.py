"""Whether a value fits a custom field of a given type: one rule for lead and contact fields
(``options.CustomFieldSpec``) and for the fields of custom activity types (``team.py``).

The real Close messages for type and choice errors are UNKNOWN (close-api.md §6); these texts
are the emulator's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Literal

FieldType = Literal["text", "number", "choices", "date", "datetime", "user"]


def value_problem(kind: FieldType, choices: Sequence[str] | None, value: Any) -> str | None:
    """An error message if ``value`` is not a valid single value of a ``kind`` field."""
    if kind == "text":
        return None if isinstance(value, str) else "Must be a string."
    if kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "Must be a number."
    if kind == "choices":
        if isinstance(value, str) and value in (choices or []):
            return None
        return f"Not a valid choice: {value!r}."
    if kind == "user":
        # A user_... id; whether it names a user of the organisation is checked by the
        # object that stores it (EmulatorOptions.user_field_values).
        ok = isinstance(value, str) and value.startswith("user_")
        return None if ok else "Must be a user id (user_...)."
    parse = date.fromisoformat if kind == "date" else datetime.fromisoformat
    try:
        parse(value)
    except (TypeError, ValueError):
        return f"Not a valid {kind}."
    return None


def multi_value_allowed(kind: FieldType) -> bool:
    """Only choices and user fields accept several values in the emulator."""
    return kind in ("choices", "user")


def definition_problem(kind: FieldType, choices: list[str] | None, multiple: bool) -> str | None:
    """What is wrong with a field's definition (its type, choices, several values), if any."""
    if kind == "choices" and not choices:
        return "a choices field needs a non-empty 'choices' list"
    if multiple and not multi_value_allowed(kind):
        return "only choices and user fields accept multiple values here"
    return None
