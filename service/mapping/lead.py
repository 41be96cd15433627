"""The Close lead-create body of one submission, from its canonical record.

``lead_body`` evaluates a source's compiled lead template over the canonical record: a key
the template leaves out takes the default rule (the lead's name from company, full name or
email; its URL from the website; its description from the message unless the template reads
the message elsewhere), a key set to ``null`` is not sent. It adds the contact (the person who
submitted), the address and the custom fields, resolving the status label and checking custom
values against the Close schema. A value that cannot be used becomes a notice on the
``RecordBuilder``, never an error; a template expression failing on the data raises
``MappingRejected``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.mapping.normalize import Notice, RecordBuilder, address_of
from service.mapping.schema import CloseSchema, check_value, status_entry
from service.mapping.spec import MappingLimits
from service.mapping.template import CompiledTemplate, CustomEntry, Expr, evaluate
from service.mapping.text import is_empty, scalar_text

BY_NAME = "given by name; resolved when a Close schema is available"
UNKNOWN_STATUS = "status is not a lead status of this organisation; the default status is used"


def lead_body(
    template: CompiledTemplate,
    schema: CloseSchema | None,
    limits: MappingLimits,
    record: dict[str, Any],
    builder: RecordBuilder,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The lead-create body, and its contact (None: none) as a copy independent of the body."""
    t = template
    default_name = record.get("company") or record.get("full_name") or record.get("email")
    values = {
        "name": _pick(t.lead, "name", record, default_name, builder.as_text("lead.name")),
        "url": _pick(t.lead, "url", record, record.get("website"), builder.as_url),
        "description": _pick(
            t.lead,
            "description",
            record,
            None if t.message_elsewhere else record.get("message"),
            builder.as_text("lead.description", limits.message, multiline=True),
        ),
    }
    lead: dict[str, Any] = {key: value for key, value in values.items() if value}
    status = _pick(t.lead, "status", record, None, scalar_text)
    if status and status.strip():
        resolved = status_entry(status.strip(), schema)
        if resolved is None:
            builder.notices.append(Notice(UNKNOWN_STATUS, status))
        else:
            lead[resolved[0]] = resolved[1]
    contact = _contact(t, limits, record, builder) if t.spec.include_contact else None
    if contact:
        lead["contacts"] = [contact]
    address = address_of(record, t.spec.address_label) if t.spec.include_address else None
    if address:
        lead["addresses"] = [address]
    lead.update(_custom(t.custom, limits, record, builder))
    return lead, _copy_json(contact)


def _contact(
    template: CompiledTemplate,
    limits: MappingLimits,
    record: dict[str, Any],
    builder: RecordBuilder,
) -> dict[str, Any] | None:
    exprs, spec = template.contact, template.spec.contact
    name = _pick(exprs, "name", record, record.get("full_name"), builder.as_text("contact.name"))
    title = _pick(exprs, "title", record, record.get("title"), builder.as_text("contact.title"))
    email = _pick(exprs, "email", record, record.get("email"), builder.as_email)
    phone = _pick(exprs, "phone", record, record.get("phone"), builder.as_phone)
    urls = _pick(exprs, "urls", record, [], lambda v: [builder.as_url(u) for u in _as_list(v)])
    contact: dict[str, Any] = {}
    if name:
        contact["name"] = name
    if title:
        contact["title"] = title
    if email:
        contact["emails"] = [{"email": email, "type": spec.email_type}]
    if phone:
        contact["phones"] = [{"phone": phone, "type": spec.phone_type}]
    if urls and any(urls):
        contact["urls"] = [{"url": url, "type": spec.url_type} for url in urls if url]
    if not contact.keys() & {"name", "emails", "phones"}:
        return None  # a title or URL alone is not a person
    contact.update(_custom(template.contact_custom, limits, record, builder))
    return contact


def _custom(
    entries: list[CustomEntry], limits: MappingLimits, record: Any, builder: RecordBuilder
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for entry in entries:
        value = evaluate(entry.expr, record)
        if isinstance(value, str):
            value = builder.text(value, entry.expr.path, limits.extra, multiline=True)
        if is_empty(value):
            continue
        if entry.target is None:
            builder.notices.append(Notice(f"custom field '{entry.name}' {BY_NAME}"))
            continue
        if entry.field is not None:
            checked = check_value(entry.field, value)
            if checked.problem:
                builder.notices.append(Notice(checked.problem, scalar_text(value)))
            value = checked.value
        if not is_empty(value):
            result[entry.target] = value
    return result


def _pick(
    exprs: dict[str, Expr | None],
    key: str,
    record: Any,
    default: Any,
    convert: Callable[[Any], Any],
) -> Any:
    """The template's value for ``key`` converted; ``default`` when not set; None if null."""
    if key not in exprs:
        return default
    expr = exprs[key]
    return None if expr is None else convert(evaluate(expr, record))


def _copy_json(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts, lists, scalars): copy.deepcopy, cheaper."""
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    return value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


__all__ = ["BY_NAME", "UNKNOWN_STATUS", "lead_body"]
