"""The Close request bodies of the follow-up steps, built from a resolved plan (``plan.py``),
the mapped submission and, on a match, the lead as Close holds it. Pure functions: the steps
(``followups.py``) send what they return, and ``lead-intake map`` shows it.

- :func:`lead_update`: the one ``PUT /lead/{id}/`` of a re-submission, with only what changes
  under each field's policy (``fill_if_empty``, ``overwrite``, ``append``, ``never``), the owner
  and a status rule; the before and after of every change.
- :func:`contact_update`: the matched contact's phones (or emails) with the submitted one
  added; Close replaces such a list whole, so the body holds the whole new list.
- :func:`task_body`, :func:`subscription_body`, :func:`opportunity_body`, :func:`activity_body`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.mapping import Identity
from service.mapping.text import is_empty
from service.worker.plan import ActivityPlan, DealChoice, OpportunityPlan, TaskPlan, UpdatePlan

_NUMBER = re.compile(r"[^\d.,-]")


class Skip(Exception):
    """The step is not needed for this submission: the reason goes to the record."""


@dataclass(frozen=True, slots=True)
class Change:
    """A body to send and what it changes (field → ``{"before", "after"}``)."""

    body: dict[str, Any]
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)


def due_at(received_at: float, delay: float) -> str:
    """A task's ``date``: the receipt time plus the delay, ISO-8601 in UTC."""
    moment = datetime.fromtimestamp(received_at + delay, UTC)
    return moment.isoformat(timespec="seconds")


# -- the lead and its contact ---------------------------------------------------------------------


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _address_key(address: Mapping[str, Any]) -> tuple[str, ...]:
    keys = ("address_1", "address_2", "city", "state", "zipcode", "country")
    return tuple(str(address.get(k) or "").strip().casefold() for k in keys)


def _field_change(
    key: str, policy: str, new: Any, old: Any, *, multiple: bool
) -> tuple[str, Any] | None:
    """The key and value to send for one field, or None when nothing changes."""
    if policy == "never" or is_empty(new):
        return None
    if key == "addresses":
        old_list, new_list = _values(old), _values(new)
        if policy == "fill_if_empty":
            return (key, new_list) if not old_list else None
        seen = {_address_key(a) for a in old_list}
        added = [a for a in new_list if _address_key(a) not in seen]
        if policy == "append":
            return (key, old_list + added) if added else None
        same = {_address_key(a) for a in new_list} == seen
        return None if same else (key, new_list)
    if multiple:
        old_list, new_list = _values(old), _values(new)
        if policy == "fill_if_empty":
            return (key, new_list) if not old_list else None
        if policy == "append":
            added = [v for v in new_list if v not in old_list]
            if not added:
                return None
            return (f"{key}.add", added[0]) if len(added) == 1 else (key, old_list + added)
        return None if set(map(str, new_list)) == set(map(str, old_list)) else (key, new_list)
    if policy == "fill_if_empty":
        return (key, new) if is_empty(old) else None
    return None if new == old else (key, new)  # overwrite (append is refused by the config)


def _updatable(key: str) -> bool:
    return key in ("name", "url", "description", "addresses") or key.startswith("custom.")


def lead_update(
    plan: UpdatePlan | None,
    submitted: Mapping[str, Any],
    lead: Mapping[str, Any],
    *,
    owner: tuple[str, str] | None = None,
) -> Change:
    """The PUT body for the matched ``lead`` (empty: nothing changes). ``submitted`` is the
    lead-create body the submission maps to; ``owner`` the (key, user id) to write."""
    body: dict[str, Any] = {}
    changes: dict[str, dict[str, Any]] = {}
    for key, new in submitted.items():
        if plan is None or not _updatable(key) or (owner is not None and key == owner[0]):
            continue
        old = lead.get(key)
        change = _field_change(key, plan.policy(key), new, old, multiple=key in plan.multiple)
        if change is None:
            continue
        sent_key, sent = change
        body[sent_key] = sent
        after = [*_values(old), sent] if sent_key.endswith(".add") else sent
        changes[key] = {"before": old, "after": after}
    if owner is not None and lead.get(owner[0]) != owner[1]:
        body[owner[0]] = owner[1]
        changes[owner[0]] = {"before": lead.get(owner[0]), "after": owner[1]}
    status = lead.get("status_id")
    for moved_from, to in plan.status if plan is not None else ():
        if status in moved_from and status != to:
            body["status_id"] = to
            changes["status_id"] = {"before": status, "after": to}
            break
    return Change(body, changes)


def holds_body(lead: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """Whether ``lead`` holds what a create ``body`` would have given it (its name, url,
    description and custom fields): a create whose answer was lost may be the one that made it."""
    for key, value in body.items():
        if not _updatable(key) or key == "addresses" or is_empty(value):
            continue
        have = lead.get(key)
        if isinstance(value, list) or isinstance(have, list):
            if not set(map(str, _values(value))) <= set(map(str, _values(have))):
                return False
        elif have != value:
            return False
    return True


def person_contact(lead: Mapping[str, Any], identity: Identity) -> Mapping[str, Any] | None:
    """The lead's contact that is the person: by email first, else by phone."""
    contacts = [c for c in lead.get("contacts") or [] if isinstance(c, Mapping)]
    if identity.email:
        for contact in contacts:
            emails = {str(e.get("email", "")).casefold() for e in contact.get("emails") or []}
            if identity.email.casefold() in emails:
                return contact
    if identity.phone:
        for contact in contacts:
            if identity.phone in {str(p.get("phone", "")) for p in contact.get("phones") or []}:
                return contact
    return None


def contact_update(
    submitted: Mapping[str, Any] | None, contact: Mapping[str, Any] | None
) -> Change:
    """Add the submitted phones and emails the matched ``contact`` lacks (the whole list, as
    Close's PUT replaces it)."""
    if not submitted or contact is None:
        return Change({})
    body: dict[str, Any] = {}
    changes: dict[str, dict[str, Any]] = {}
    for key, value_key in (("phones", "phone"), ("emails", "email")):
        current = [dict(e) for e in contact.get(key) or [] if isinstance(e, Mapping)]
        have = {str(e.get(value_key, "")).casefold() for e in current}
        added = [
            {value_key: e[value_key], "type": e.get("type") or "office"}
            for e in submitted.get(key) or []
            if str(e.get(value_key, "")).casefold() not in have
        ]
        if added:
            kept = [{value_key: e[value_key], "type": e.get("type")} for e in current]
            body[key] = kept + added
            changes[key] = {
                "before": [e[value_key] for e in kept],
                "after": [e[value_key] for e in kept + added],
            }
    return Change(body, changes)


# -- the follow-ups -----------------------------------------------------------------------------


def task_body(
    plan: TaskPlan,
    record: Mapping[str, Any],
    *,
    lead_id: str,
    owner: str | None,
    contact_id: str | None,
    received_at: float,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "_type": plan.type,
        "lead_id": lead_id,
        "text": plan.text.render(record, limit=1000) or "Follow up the web submission",
        "date": due_at(received_at, plan.due_in),
    }
    assignee = plan.assign_to or owner
    if assignee is not None:
        body["assigned_to"] = assignee
    if plan.type == "outgoing_call":
        if contact_id is None:
            raise Skip("an outgoing call task needs the submitting contact, and the lead has none")
        body["contact_id"] = contact_id
    elif contact_id is not None:
        body["contact_id"] = contact_id
    return body


def subscription_body(
    sequence_id: str, contact: Mapping[str, Any], email: str, account: Any
) -> dict[str, Any]:
    return {
        "sequence_id": sequence_id,
        "contact_id": contact["id"],
        "contact_email": email,
        "sender_account_id": account.id,
        "sender_name": account.name,
        "sender_email": account.email,
    }


def cents(value: Any) -> int | None:
    """A value in the currency's major unit as Close's integer minor unit: ``12.5`` → 1250,
    ``"$1,200"`` → 120000; None when it is not a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = _NUMBER.sub("", str(value)).replace(",", "")
        try:
            number = float(text)
        except ValueError:
            return None
    if not math.isfinite(number) or abs(number) > 1e13:  # beyond any deal
        return None
    return round(number * 100)


def _period(choice: DealChoice, record: Mapping[str, Any]) -> str | None:
    period = choice.value_period
    if period is None or isinstance(period, str):
        return period
    value = period.value(record)
    return value if value in ("one_time", "monthly", "annual") else None


def opportunity_body(
    plan: OpportunityPlan,
    record: Mapping[str, Any],
    *,
    lead_id: str,
    owner: str | None,
    contact_id: str | None,
) -> tuple[dict[str, Any], DealChoice, str]:
    """The body, the choice it follows and which rule chose it (Skip when a rule says so)."""
    choice, how = plan.choose(record)
    if choice is None:
        raise Skip(f"opportunity {how} says skip for this submission")
    body: dict[str, Any] = {"lead_id": lead_id, "pipeline_id": choice.pipeline_id}
    if choice.status_id is not None:
        body["status_id"] = choice.status_id
    if choice.value is not None:
        amount = cents(choice.value.value(record))
        if amount is not None:
            body["value"] = amount
            body["value_period"] = _period(choice, record) or "one_time"
    if choice.confidence is not None:
        body["confidence"] = choice.confidence
    if choice.note is not None:
        body["note"] = choice.note.render(record, limit=10_000)
    user = plan.user or owner
    if user is not None:
        body["user_id"] = user
    if contact_id is not None:
        body["contact_id"] = contact_id
    return body, choice, how


def _field_value(value: Any, *, multiple: bool, kind: str) -> Any:
    if is_empty(value):
        return None
    if multiple:
        return [v for v in _values(value) if not is_empty(v)] or None
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    if kind == "number":
        try:
            number = float(str(value).replace(",", ""))
        except ValueError:
            return None
        return int(number) if number.is_integer() else number
    return value if isinstance(value, str | int | float) else str(value)


def activity_body(
    plan: ActivityPlan,
    record: Mapping[str, Any],
    *,
    lead_id: str,
    contact_id: str | None,
    submission_id: str,
) -> dict[str, Any]:
    """The custom activity's body; the marker field (if any) carries ``submission_id``."""
    body: dict[str, Any] = {
        "custom_activity_type_id": plan.type_id,
        "lead_id": lead_id,
        "status": plan.status,
    }
    if contact_id is not None:
        body["contact_id"] = contact_id
    for found, expr in plan.fields:
        value = _field_value(expr.value(record), multiple=found.multiple, kind=found.type)
        if value is not None:
            body[f"custom.{found.id}"] = value
    if plan.marker is not None:
        body[f"custom.{plan.marker.id}"] = submission_id
    return body


def same_fields(body: Mapping[str, Any], made: Mapping[str, Any], keys: Sequence[str]) -> bool:
    """Whether ``made`` (an object Close holds) has ``body``'s values for ``keys``."""
    return all(made.get(key) == body.get(key) for key in keys if key in body)
