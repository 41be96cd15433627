"""Field-level rules of the Close emulator: 400 bodies, phones, custom field values.

A 400 body is always ``{"errors": [...], "field-errors": {...}}``; errors inside a list
(``contacts``, ``emails`` …) nest as ``{"errors": {"<index>": <400 body>}}`` under the list's
key, the index as a string (close-api.md §1).
"""

from __future__ import annotations

from typing import Any

import phonenumbers

from close_emulator.team import CustomFieldSpec

JSONObject = dict[str, Any]

REQUIRED = "This field is required."
DOES_NOT_EXIST = "Object does not exist."
# Real Close texts for these type errors are UNKNOWN; they are the emulator's own.
NOT_A_STRING = "Must be a string."
NOT_A_LIST = "Must be a list."
NOT_AN_OBJECT = "Must be an object."


class Errors:
    """Collects the errors of one object while it is being validated."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.fields: dict[str, Any] = {}

    def __bool__(self) -> bool:
        return bool(self.errors or self.fields)

    def add(self, key: str, message: Any) -> None:
        self.fields[key] = message

    def nested(self, key: str, index: int, inner: Errors) -> None:
        """Record the errors of item ``index`` of the list under ``key``."""
        entry = self.fields.setdefault(key, {"errors": {}})
        entry["errors"][str(index)] = inner.body()

    def body(self) -> JSONObject:
        return {"errors": list(self.errors), "field-errors": dict(self.fields)}

    def raise_if_any(self) -> None:
        if self:
            raise ValidationFailed(self.body())


class ValidationFailed(Exception):
    """A write the emulator refuses with 400 and ``body``."""

    def __init__(self, body: JSONObject) -> None:
        super().__init__(body)
        self.body = body

    @classmethod
    def single(cls, key: str, message: str) -> ValidationFailed:
        return cls({"errors": [], "field-errors": {key: message}})


def optional_string(body: JSONObject, key: str, errors: Errors) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    errors.add(key, NOT_A_STRING)
    return None


def object_list(body: JSONObject, key: str, errors: Errors) -> list[JSONObject]:
    """The list under ``key`` (absent/null → empty); items that are not objects are errors."""
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(key, NOT_A_LIST)
        return []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            inner = Errors()
            inner.errors.append(NOT_AN_OBJECT)
            errors.nested(key, index, inner)
    return [item for item in value if isinstance(item, dict)]


def normalize_phone(raw: str, region: str) -> tuple[str, str] | None:
    """``(E.164, international format)``, or None if ``raw`` is not a possible number."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return (
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
    )


def custom_key(key: str) -> tuple[str, str | None] | None:
    """Split ``custom.<ref>[.add|.remove]`` into (ref, op); None if not a custom key."""
    if not key.startswith("custom.") or len(key) <= len("custom."):
        return None
    ref = key[len("custom.") :]
    for op in ("add", "remove"):
        if ref.endswith("." + op):
            return ref[: -len(op) - 1], op
    return ref, None


def find_field(ref: str, specs: list[CustomFieldSpec]) -> CustomFieldSpec | None:
    """A field by id, or (deprecated ``custom.<name>`` form) by name."""
    for spec in specs:
        if ref in (spec.id, spec.name):
            return spec
    return None


def missing_field_message(ref: str) -> str:
    # The real text is known for names (close-api.md §6); for unknown ids it is UNKNOWN
    # and the same shape is assumed.
    return f'The Custom Field "{ref}" does not exist.'


def custom_value(spec: CustomFieldSpec, value: Any) -> tuple[Any, str | None]:
    """Validate a whole value of ``spec``: (stored value, error message)."""
    if value is None:
        return None, None
    if spec.accepts_multiple_values:
        items = value if isinstance(value, list) else [value]  # a scalar is wrapped: UNKNOWN
        for item in items:
            message = spec.check_value(item)
            if message:
                return None, message
        return list(dict.fromkeys(items)), None
    if isinstance(value, list):
        return None, "Must be a single value."
    return value, spec.check_value(value)


def apply_custom_fields(
    body: JSONObject,
    target: JSONObject,
    specs: list[CustomFieldSpec],
    errors: Errors,
    *,
    allow_ops: bool,
) -> None:
    """Write the body's ``custom.*`` keys (and a deprecated ``custom`` dict) into ``target``.

    ``target`` holds stored values as ``custom.<id>`` keys; ``None`` clears a field.
    ``.add``/``.remove`` suffixes are accepted only when ``allow_ops`` (updates).
    """
    items = [(key, value) for key, value in body.items() if key.startswith("custom.")]
    legacy = body.get("custom")
    if isinstance(legacy, dict):
        items += [(f"custom.{name}", value) for name, value in legacy.items()]
    elif legacy is not None:
        errors.add("custom", NOT_AN_OBJECT)
    for key, value in items:
        parsed = custom_key(key)
        spec = find_field(parsed[0], specs) if parsed else None
        if parsed is None or spec is None or (parsed[1] and not allow_ops):
            errors.add(key, missing_field_message(parsed[0] if parsed else key))
            continue
        stored_key = f"custom.{spec.id}"
        op = parsed[1]
        if op is None:
            stored, message = custom_value(spec, value)
            if message:
                errors.add(key, message)
            elif stored is None:
                target.pop(stored_key, None)
            else:
                target[stored_key] = stored
            continue
        if not spec.accepts_multiple_values:
            errors.add(key, "Only multi-value fields support .add and .remove.")
            continue
        message = spec.check_value(value)
        if message:
            errors.add(key, message)
            continue
        current = list(target.get(stored_key) or [])
        if op == "add" and value not in current:
            current.append(value)
        elif op == "remove" and value in current:
            current.remove(value)
        if current:
            target[stored_key] = current
        else:
            target.pop(stored_key, None)


def custom_fields_of(obj: JSONObject) -> JSONObject:
    """The ``custom.<id>`` values stored on a lead or contact."""
    return {key: value for key, value in obj.items() if key.startswith("custom.")}
