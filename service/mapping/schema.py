"""An immutable snapshot of an organisation's Close custom fields and lead statuses.

The worker fetches ``GET /custom_field_schema/lead/`` (and optionally ``.../contact/``) and
``GET /status/lead/`` at start and on refresh, builds a ``CloseSchema`` with ``from_api`` and
hands it to the ``Mapper``. Names are matched case-insensitively, ids exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ID_PREFIXES = ("cf_", "lcf_")


def is_field_id(key: str) -> bool:
    """True for a custom field id (``cf_...`` or the older ``lcf_...``)."""
    return key.startswith(ID_PREFIXES)


@dataclass(frozen=True, slots=True)
class CustomField:
    """One custom field definition."""

    id: str
    name: str
    type: str
    choices: tuple[str, ...] = ()
    multiple: bool = False


@dataclass(frozen=True, slots=True)
class Status:
    """One lead status."""

    id: str
    label: str


@dataclass(frozen=True, slots=True)
class Checked:
    """A value checked against a field: the value to send (None: send nothing), and why not."""

    value: Any
    problem: str | None = None


def _index(fields: list[CustomField]) -> tuple[dict[str, CustomField], dict[str, CustomField]]:
    by_id = {f.id: f for f in fields}
    by_name: dict[str, CustomField] = {}
    for f in fields:
        by_name.setdefault(f.name.casefold(), f)
    return by_id, by_name


def _parse_fields(body: Mapping[str, Any] | None) -> list[CustomField]:
    rows = body.get("fields") if isinstance(body, Mapping) else None
    if rows is None and isinstance(body, Mapping):
        rows = body.get("data")
    result: list[CustomField] = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, Mapping) or not row.get("id") or not row.get("name"):
            continue
        choices = row.get("choices")
        result.append(
            CustomField(
                id=str(row["id"]),
                name=str(row["name"]),
                type=str(row.get("type") or "text"),
                choices=tuple(str(c) for c in choices) if isinstance(choices, list) else (),
                multiple=bool(row.get("accepts_multiple_values")),
            )
        )
    return result


@dataclass(frozen=True)
class CloseSchema:
    """Custom fields (lead and contact) and lead statuses of one Close organisation."""

    lead_fields: tuple[CustomField, ...] = ()
    contact_fields: tuple[CustomField, ...] = ()
    statuses: tuple[Status, ...] = ()
    _lead: tuple[dict[str, CustomField], dict[str, CustomField]] = field(
        init=False, repr=False, compare=False
    )
    _contact: tuple[dict[str, CustomField], dict[str, CustomField]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lead", _index(list(self.lead_fields)))
        object.__setattr__(self, "_contact", _index(list(self.contact_fields)))

    @classmethod
    def from_api(
        cls,
        custom_field_schema: dict[str, Any],
        statuses: dict[str, Any],
        *,
        contact_field_schema: dict[str, Any] | None = None,
    ) -> CloseSchema:
        """Build from the bodies of the schema and status endpoints; malformed rows are skipped."""
        rows = statuses.get("data") if isinstance(statuses, Mapping) else None
        parsed = tuple(
            Status(id=str(row["id"]), label=str(row["label"]))
            for row in (rows if isinstance(rows, list) else [])
            if isinstance(row, Mapping) and row.get("id") and row.get("label")
        )
        return cls(
            lead_fields=tuple(_parse_fields(custom_field_schema)),
            contact_fields=tuple(_parse_fields(contact_field_schema)),
            statuses=parsed,
        )

    def find_field(self, key: str, *, contact: bool = False) -> CustomField | None:
        """The field with id ``key`` (``cf_...``) or, otherwise, with that name."""
        by_id, by_name = self._contact if contact else self._lead
        if is_field_id(key):
            return by_id.get(key)
        return by_name.get(key.casefold())

    def find_status(self, value: str) -> Status | None:
        """The status with id ``value`` (``stat_...``) or with that label (any case)."""
        for status in self.statuses:
            if status.id == value:
                return status
        wanted = value.strip().casefold()
        for status in self.statuses:
            if status.label.casefold() == wanted:
                return status
        return None

    def status_labels(self) -> list[str]:
        return [status.label for status in self.statuses]


def status_entry(value: str, schema: CloseSchema | None) -> tuple[str, str] | None:
    """The lead key and value for a status id or label; None for a label the schema lacks.

    Without a schema an id goes as ``status_id`` and a label as ``status`` (Close resolves it).
    """
    if schema is None:
        return ("status_id" if value.startswith("stat_") else "status", value)
    status = schema.find_status(value)
    return None if status is None else ("status_id", status.id)


def check_value(custom: CustomField, value: Any) -> Checked:
    """``value`` made fit for ``custom``: choices matched (any case), numbers parsed."""
    if custom.multiple and not isinstance(value, list):
        value = [value]
    if isinstance(value, list):
        if not custom.multiple:
            value = value[0] if len(value) == 1 else ", ".join(str(v) for v in value)
        else:
            checked = [check_value(_single(custom), item) for item in value]
            kept = [c.value for c in checked if c.value is not None]
            problems = [c.problem for c in checked if c.problem]
            return Checked(kept or None, "; ".join(problems) or None)
    if custom.choices:
        return _choice(custom, value)
    if custom.type == "number":
        return _number(custom, value)
    if isinstance(value, (dict, list)):
        return Checked(None, f"custom field '{custom.name}' cannot hold a list or object")
    return Checked(value)


def _single(custom: CustomField) -> CustomField:
    return CustomField(custom.id, custom.name, custom.type, custom.choices, multiple=False)


def _choice(custom: CustomField, value: Any) -> Checked:
    text = str(value).strip() if isinstance(value, (str, int, float)) else ""
    for choice in custom.choices:
        if choice == text or choice.casefold() == text.casefold():
            return Checked(choice)
    allowed = ", ".join(repr(c) for c in custom.choices[:20])
    return Checked(None, f"value is not a choice of custom field '{custom.name}' ({allowed})")


def _number(custom: CustomField, value: Any) -> Checked:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Checked(value)
    try:
        number = float(str(value).strip().replace(",", ""))
    except ValueError:
        return Checked(None, f"custom field '{custom.name}' needs a number")
    if not math.isfinite(number):
        return Checked(None, f"custom field '{custom.name}' needs a number")
    return Checked(int(number) if number.is_integer() else number)
