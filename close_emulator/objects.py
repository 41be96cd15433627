"""Leads, contacts and notes of the Close emulator: validate a request body, build the object.

Every function validates the whole body first and raises ``ValidationFailed`` (a 400) before
changing anything, so a refused write leaves no trace.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser

from close_emulator.events import snapshot
from close_emulator.fields import (
    DOES_NOT_EXIST,
    REQUIRED,
    Errors,
    JSONObject,
    apply_custom_fields,
    normalize_phone,
    object_list,
    optional_string,
)
from close_emulator.options import EmulatorOptions, LeadStatus
from close_emulator.state import EmulatorState, now_iso
from close_emulator.team import CustomFieldSpec

ADDRESS_KEYS = ("label", "address_1", "address_2", "city", "state", "zipcode", "country")
# Not in the docs: "Not a valid choice. …" is all a recorded response shows (close-api.md §1).
BAD_STATUS = "Not a valid choice."


def _creator(state: EmulatorState) -> JSONObject:
    options = state.options
    return {
        "organization_id": options.organization_id,
        "created_by": options.user_id,
        "created_by_name": options.user_name,
        "updated_by": options.user_id,
        "updated_by_name": options.user_name,
    }


def _touch(obj: JSONObject, state: EmulatorState) -> None:
    obj["date_updated"] = now_iso()
    obj["updated_by"] = state.options.user_id
    obj["updated_by_name"] = state.options.user_name


# Contacts -------------------------------------------------------------------------------------
def _entries(
    body: JSONObject, key: str, value_key: str, default_type: str, errors: Errors
) -> list[JSONObject]:
    """``emails``/``phones``/``urls``: objects with ``value_key`` and an optional ``type``."""
    entries = []
    for index, item in enumerate(object_list(body, key, errors)):
        inner = Errors()
        value = item.get(value_key)
        if not isinstance(value, str) or not value.strip():
            inner.add(value_key, REQUIRED)
        kind = optional_string(item, "type", inner) or default_type
        if inner:
            errors.nested(key, index, inner)
        else:
            entries.append({value_key: value, "type": kind})
    return entries


def _phones(body: JSONObject, options: EmulatorOptions, errors: Errors) -> list[JSONObject]:
    phones = []
    for index, entry in enumerate(_entries(body, "phones", "phone", "office", errors)):
        normal = normalize_phone(entry["phone"], options.default_region)
        if normal is None and options.reject_invalid_phones:
            inner = Errors()
            inner.add("phone", "Invalid phone number.")  # real text UNKNOWN
            errors.nested("phones", index, inner)
            continue
        e164, formatted = normal or (entry["phone"], entry["phone"])
        phones.append({"phone": e164, "phone_formatted": formatted, "type": entry["type"]})
    return phones


def _contact_fields(body: JSONObject, options: EmulatorOptions, errors: Errors) -> JSONObject:
    fields: JSONObject = {
        "name": optional_string(body, "name", errors) or "",
        "title": optional_string(body, "title", errors) or "",
        "emails": _entries(body, "emails", "email", "office", errors),
        "phones": _phones(body, options, errors),
        "urls": _entries(body, "urls", "url", "url", errors),
    }
    apply_custom_fields(body, fields, options.contact_custom_fields, errors, allow_ops=False)
    return fields


def _contact_display_name(contact: JSONObject) -> str:
    if contact["name"]:
        return str(contact["name"])
    if contact["emails"]:
        return str(contact["emails"][0]["email"])
    if contact["phones"]:
        return str(contact["phones"][0]["phone_formatted"])
    return ""


def mark_unsubscribed(contact: JSONObject, state: EmulatorState) -> None:
    """``emails[].is_unsubscribed`` from the organisation's unsubscribe list."""
    for entry in contact.get("emails") or []:
        entry["is_unsubscribed"] = str(entry.get("email", "")).casefold() in state.unsubscribed


def check_user_values(
    values: JSONObject, specs: list[CustomFieldSpec], state: EmulatorState, errors: Errors
) -> None:
    """``user`` custom fields must name users of the organisation (``user_field_values``)."""
    if state.options.user_field_values != "known":
        return
    known = {user.id for user in state.options.users}
    for spec in specs:
        if spec.type != "user":
            continue
        value = values.get(f"custom.{spec.id}")
        for item in value if isinstance(value, list) else [value]:
            if item is not None and item not in known:
                errors.add(f"custom.{spec.id}", DOES_NOT_EXIST)  # Close's text is UNKNOWN


def _build_contact(fields: JSONObject, lead_id: str, state: EmulatorState) -> JSONObject:
    stamp = now_iso()
    contact = {
        "id": state.new_id("cont_"),
        "lead_id": lead_id,
        **fields,
        "display_name": "",
        **_creator(state),
        "date_created": stamp,
        "date_updated": stamp,
    }
    contact["display_name"] = _contact_display_name(contact)
    mark_unsubscribed(contact, state)
    return contact


# Leads ----------------------------------------------------------------------------------------
def _status(body: JSONObject, options: EmulatorOptions, errors: Errors) -> LeadStatus | None:
    """The status asked for; errors go under ``status`` even for ``status_id`` (as Close does)."""
    statuses = options.lead_statuses
    if body.get("status_id") is not None:
        wanted, attribute = body["status_id"], "id"
    elif body.get("status") is not None:
        wanted, attribute = body["status"], "label"
    else:
        return None
    for status in statuses:
        if getattr(status, attribute) == wanted:
            return status
    errors.add("status", BAD_STATUS)
    return None


def _addresses(body: JSONObject, errors: Errors) -> list[JSONObject]:
    return [
        {key: address.get(key) for key in ADDRESS_KEYS}
        for address in object_list(body, "addresses", errors)
    ]


def _display_name(lead: JSONObject) -> str:
    if lead["name"]:
        return str(lead["name"])
    contacts = lead["contacts"]
    return str(contacts[0]["display_name"]) if contacts else ""


def _new_lead(fields: JSONObject, contacts: list[JSONObject], state: EmulatorState) -> JSONObject:
    lead_id = state.new_id("lead_")
    stamp = now_iso()
    status = fields.pop("status", None) or state.options.lead_statuses[0]
    lead: JSONObject = {
        "id": lead_id,
        "name": "",
        "display_name": "",
        "url": None,
        "description": "",
        "status_id": status.id,
        "status_label": status.label,
        "contacts": [_build_contact(contact, lead_id, state) for contact in contacts],
        "addresses": [],
        "opportunities": [],
        "tasks": [],
        "html_url": f"{state.options.app_url}/lead/{lead_id}/",
        **_creator(state),
        "date_created": stamp,
        "date_updated": stamp,
    }
    lead.update({key: value for key, value in fields.items() if value is not None})
    lead["display_name"] = _display_name(lead)
    return lead


def create_lead(body: JSONObject, state: EmulatorState) -> JSONObject:
    """``POST /lead/``: validate, store and return the new lead."""
    options, errors = state.options, Errors()
    fields: JSONObject = {
        "name": optional_string(body, "name", errors),
        "url": optional_string(body, "url", errors),
        "description": optional_string(body, "description", errors),
        "status": _status(body, options, errors),
        "addresses": _addresses(body, errors),
    }
    apply_custom_fields(body, fields, options.lead_custom_fields, errors, allow_ops=False)
    check_user_values(fields, options.lead_custom_fields, state, errors)
    contacts = []
    for index, item in enumerate(object_list(body, "contacts", errors)):
        inner = Errors()
        contacts.append(_contact_fields(item, options, inner))
        if inner:
            errors.nested("contacts", index, inner)
    errors.raise_if_any()
    lead = _new_lead(fields, contacts, state)
    state.store_lead(lead)
    _record_new_lead(lead, state)
    return lead


def _record_new_lead(lead: JSONObject, state: EmulatorState) -> None:
    state.events.record("lead", "created", lead)
    for contact in lead["contacts"]:
        state.events.record("contact", "created", contact)


def update_lead(lead: JSONObject, body: JSONObject, state: EmulatorState) -> JSONObject:
    """``PUT /lead/{id}/``: a partial update; ``contacts`` are ignored (use the Contacts API)."""
    options, errors = state.options, Errors()
    before = snapshot(lead)
    changes: JSONObject = {}
    for key in ("name", "url", "description"):
        if key in body:
            changes[key] = optional_string(body, key, errors)
    status = _status(body, options, errors)
    if status is not None:
        changes.update(status_id=status.id, status_label=status.label)
    if "addresses" in body:
        changes["addresses"] = _addresses(body, errors)
    custom = {key: value for key, value in lead.items() if key.startswith("custom.")}
    apply_custom_fields(body, custom, options.lead_custom_fields, errors, allow_ops=True)
    check_user_values(custom, options.lead_custom_fields, state, errors)
    errors.raise_if_any()
    for key in [key for key in lead if key.startswith("custom.")]:
        del lead[key]
    lead.update(changes)
    lead.update(custom)
    if lead.get("description") is None:
        lead["description"] = ""
    if lead.get("name") is None:
        lead["name"] = ""
    lead["display_name"] = _display_name(lead)
    _touch(lead, state)
    state.store_lead(lead)
    state.events.record("lead", "updated", lead, previous=before)
    return lead


def create_contact(body: JSONObject, state: EmulatorState) -> JSONObject:
    """``POST /contact/``: add to ``lead_id``, or without it create a lead named after it."""
    errors = Errors()
    lead_id = body.get("lead_id")
    lead = state.leads.get(lead_id) if isinstance(lead_id, str) else None
    if lead_id is not None and lead is None:
        errors.add("lead", DOES_NOT_EXIST)
    fields = _contact_fields(body, state.options, errors)
    errors.raise_if_any()
    if lead is None:
        name = fields["name"] or _contact_display_name(fields)
        lead = _new_lead({"name": name}, [fields], state)
        state.store_lead(lead)
        _record_new_lead(lead, state)
        return lead["contacts"][0]  # type: ignore[no-any-return]
    before = snapshot(lead)
    contact = _build_contact(fields, lead["id"], state)
    lead["contacts"].append(contact)
    lead["display_name"] = _display_name(lead)
    _touch(lead, state)
    state.store_lead(lead)
    state.events.record("contact", "created", contact)
    state.events.record("lead", "updated", lead, previous=before)  # its contact_ids changed
    return contact


def update_contact(contact: JSONObject, body: JSONObject, state: EmulatorState) -> JSONObject:
    """``PUT /contact/{id}/``: top-level keys sent are changed, the others kept; ``emails``,
    ``phones`` and ``urls`` replace the whole list (as recorded for ``emails``,
    close-api-actions.md §3); custom fields take ``null``, ``.add`` and ``.remove``."""
    options, errors = state.options, Errors()
    before = snapshot(contact)
    changes: JSONObject = {}
    for key in ("name", "title"):
        if key in body:
            changes[key] = optional_string(body, key, errors) or ""
    if "emails" in body:
        changes["emails"] = _entries(body, "emails", "email", "office", errors)
    if "phones" in body:
        changes["phones"] = _phones(body, options, errors)
    if "urls" in body:
        changes["urls"] = _entries(body, "urls", "url", "url", errors)
    custom = {key: value for key, value in contact.items() if key.startswith("custom.")}
    apply_custom_fields(body, custom, options.contact_custom_fields, errors, allow_ops=True)
    errors.raise_if_any()
    for key in [key for key in contact if key.startswith("custom.")]:
        del contact[key]
    contact.update(changes)
    contact.update(custom)
    contact["display_name"] = _contact_display_name(contact)
    mark_unsubscribed(contact, state)
    _touch(contact, state)
    lead = state.leads.get(contact["lead_id"])
    if lead is not None:
        lead["display_name"] = _display_name(lead)
        state.store_lead(lead)  # contact edits do not touch the lead's date_updated
    state.events.record("contact", "updated", contact, previous=before)
    return contact


# Notes ----------------------------------------------------------------------------------------
class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "p", "div", "li") and self.parts:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _html_to_text(markup: str) -> str:
    parser = _TextOnly()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts).strip()


def create_note(body: JSONObject, state: EmulatorState) -> JSONObject:
    """``POST /activity/note/``: ``note_html`` wins over ``note`` when both are sent."""
    errors = Errors()
    lead_id = body.get("lead_id")
    if lead_id is None:
        errors.add("lead", REQUIRED)
    elif not isinstance(lead_id, str) or lead_id not in state.leads:
        errors.add("lead", DOES_NOT_EXIST)
    contact_id = body.get("contact_id")
    if contact_id is not None and contact_id not in state.contacts:
        errors.add("contact", DOES_NOT_EXIST)
    text = optional_string(body, "note", errors)
    markup = optional_string(body, "note_html", errors)
    title = optional_string(body, "title", errors)
    pinned = body.get("pinned", False)
    if not isinstance(pinned, bool):
        errors.add("pinned", "Must be a boolean.")
    errors.raise_if_any()
    if markup is not None:
        text = _html_to_text(markup)
    else:
        text = text or ""
        markup = "<body>" + html.escape(text).replace("\n", "<br />") + "</body>"
    stamp = now_iso()
    note = {
        "_type": "Note",
        "id": state.new_id("acti_"),
        "lead_id": lead_id,
        "contact_id": contact_id,
        "note": text,
        "note_html": markup,
        "title": title,
        "pinned": pinned,
        "attachments": [],
        "user_id": state.options.user_id,
        "user_name": state.options.user_name,
        **_creator(state),
        "activity_at": stamp,
        "date_created": stamp,
        "date_updated": stamp,
    }
    state.store_note(note)
    state.events.record("note", "created", note)
    return note
