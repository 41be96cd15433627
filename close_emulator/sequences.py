"""The emulator's sequences (close-api-actions.md §6, §11): ``GET /sequence/``, subscriptions
(``POST`` answered 201, ``GET`` needing one of sequence_id, contact_id, lead_id, ``PUT``,
``DELETE``) and the unsubscribe list (``/unsubscribe/email/``, reflected in the contacts'
``emails[].is_unsubscribed``).

The reference's UNKNOWN points are options (``EmulatorOptions``): a duplicate subscription
(``duplicate_subscriptions``), subscribing an unsubscribed email (``unsubscribed_subscriptions``).
A subscription whose sender belongs to a deactivated user is created with ``status: error`` and
``status_reason: membership-inactive``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from close_emulator.api import API, ObjectNotFound, creates, one, read_body
from close_emulator.events import snapshot
from close_emulator.fields import DOES_NOT_EXIST, REQUIRED, Errors, JSONObject, ValidationFailed
from close_emulator.objects import mark_unsubscribed
from close_emulator.sales import accounts, page
from close_emulator.state import EMULATOR_STATE, EmulatorState, now_iso

ALREADY_SUBSCRIBED = "Contact is already subscribed to this sequence."  # Close's text: UNKNOWN
EMAIL_UNSUBSCRIBED = "This email address is unsubscribed."  # Close's text: UNKNOWN


def _state(request: web.Request) -> EmulatorState:
    return request.app[EMULATOR_STATE]


def _sequence_json(state: EmulatorState, sequence_id: str, *, counts: bool) -> JSONObject | None:
    options = state.options
    for sequence in options.sequences:
        if sequence.id != sequence_id:
            continue
        body: JSONObject = {
            "id": sequence.id,
            "name": sequence.name,
            "status": sequence.status,
            "organization_id": options.organization_id,
            "timezone": sequence.timezone,
            "schedule": None,
            "steps": [
                {
                    "id": f"seqstep_{sequence.id[4:20]}{n}",
                    "step_type": step.step_type,
                    "delay": step.delay,
                    "email_template_id": None,
                    "threading": None,
                    "required": True,
                }
                for n, step in enumerate(sequence.steps)
            ],
            "created_by_id": options.user_id,
            "updated_by_id": options.user_id,
            "date_created": "2020-01-01T00:00:00.000000",
            "date_updated": "2020-01-01T00:00:00.000000",
        }
        if counts:
            by_status = {s: 0 for s in ("active", "error", "finished", "goal", "paused")}
            for sub in state.subscriptions.values():
                if sub["sequence_id"] == sequence.id:
                    by_status[sub["status"]] = by_status.get(sub["status"], 0) + 1
            body["subscription_counts_by_status"] = by_status
        return body
    return None


async def list_sequences(request: web.Request) -> web.Response:
    state = _state(request)
    rows = [_sequence_json(state, s.id, counts=False) for s in state.options.sequences]
    return page(request, [row for row in rows if row is not None])


async def get_sequence(request: web.Request) -> web.Response:
    found = _sequence_json(_state(request), request.match_info["sequence_id"], counts=True)
    if found is None:
        raise ObjectNotFound("Sequence")
    return web.json_response(found)


def _subscription_checks(body: JSONObject, state: EmulatorState, errors: Errors) -> tuple[Any, ...]:
    sequence = next((s for s in state.options.sequences if s.id == body.get("sequence_id")), None)
    if body.get("sequence_id") is None:
        errors.add("sequence_id", REQUIRED)
    elif sequence is None:
        errors.add("sequence_id", DOES_NOT_EXIST)
    contact = (
        state.contacts.get(body.get("contact_id") or "")
        if isinstance(body.get("contact_id"), str)
        else None
    )
    if body.get("contact_id") is None:
        errors.add("contact_id", REQUIRED)
    elif contact is None:
        errors.add("contact_id", DOES_NOT_EXIST)
    emails = [str(e["email"]) for e in (contact or {}).get("emails") or []]
    email = body.get("contact_email") or (emails[0] if emails else None)
    if contact is not None and (
        email is None or email.casefold() not in {e.casefold() for e in emails}
    ):
        errors.add("contact_email", "The contact has no such email address.")
    found = next(
        ((a, u) for a, u in accounts(state.options) if a.id == body.get("sender_account_id")), None
    )
    if body.get("sender_account_id") is None:
        errors.add("sender_account_id", REQUIRED)
    elif found is None:
        errors.add("sender_account_id", DOES_NOT_EXIST)
    elif (
        body.get("sender_email")
        and body["sender_email"].casefold() != (found[0].email or found[1].email).casefold()
    ):
        errors.add("sender_email", "Not an identity of the sender account.")
    return sequence, contact, email, found


def create_subscription(body: JSONObject, state: EmulatorState) -> JSONObject:
    """``POST /sequence_subscription/`` (answered 201)."""
    errors = Errors()
    sequence, contact, email, found = _subscription_checks(body, state, errors)
    errors.raise_if_any()
    assert sequence is not None and contact is not None and found is not None
    options = state.options
    if options.duplicate_subscriptions == "reject" and any(
        s["contact_id"] == contact["id"]
        and s["sequence_id"] == sequence.id
        and s["status"] in ("active", "paused")
        for s in state.subscriptions.values()
    ):
        raise ValidationFailed({"errors": [ALREADY_SUBSCRIBED], "field-errors": {}})
    if options.unsubscribed_subscriptions == "reject" and email.casefold() in state.unsubscribed:
        raise ValidationFailed({"errors": [EMAIL_UNSUBSCRIBED], "field-errors": {}})
    account, user = found
    stamp = now_iso().replace("+00:00", "")  # subscriptions' dates carry no offset
    subscription = {
        "id": state.new_id("sub_"),
        "sequence_id": sequence.id,
        "contact_id": contact["id"],
        "lead_id": contact["lead_id"],
        "organization_id": options.organization_id,
        "contact_email": email,
        "sender_account_id": account.id,
        "sender_name": body.get("sender_name") or user.name,
        "sender_email": body.get("sender_email") or account.email or user.email,
        "calls_assigned_to": body.get("calls_assigned_to") or [],
        "status": "active" if user.active else "error",
        "status_reason": None if user.active else "membership-inactive",
        "start_date": None,
        "created_by_id": options.user_id,
        "updated_by_id": options.user_id,
        "date_created": stamp,
        "date_updated": stamp,
    }
    state.subscriptions[subscription["id"]] = subscription
    state.events.record("subscription", "created", subscription)
    return subscription


async def list_subscriptions(request: web.Request) -> web.Response:
    q = request.query
    wanted = {name: q[name] for name in ("sequence_id", "contact_id", "lead_id") if name in q}
    if not wanted:
        raise ValidationFailed(
            {
                "errors": ["One of sequence_id, contact_id or lead_id is required."],
                "field-errors": {},
            }
        )
    rows = [
        s
        for s in _state(request).subscriptions.values()
        if all(s[name] == value for name, value in wanted.items())
    ]
    return page(request, rows)


def _subscription(request: web.Request) -> JSONObject:
    return one(_state(request).subscriptions, request, "subscription_id", "SequenceSubscription")


async def get_subscription(request: web.Request) -> web.Response:
    return web.json_response(_subscription(request))


async def put_subscription(request: web.Request) -> web.Response:
    subscription = _subscription(request)
    body = await read_body(request)
    before = snapshot(subscription)
    if "status" in body:
        if body["status"] not in ("active", "paused"):
            raise ValidationFailed.single("status", "Not a valid choice.")
        subscription["status"] = body["status"]
        subscription["status_reason"] = "manual" if body["status"] == "paused" else None
    subscription["date_updated"] = now_iso().replace("+00:00", "")
    _state(request).events.record("subscription", "updated", subscription, previous=before)
    return web.json_response(subscription)


async def delete_subscription(request: web.Request) -> web.Response:
    subscription = _subscription(request)
    del _state(request).subscriptions[subscription["id"]]
    _state(request).events.record(
        "subscription", "deleted", None, object_id=subscription["id"], previous=subscription
    )
    return web.json_response({})


# -- unsubscribed emails ----------------------------------------------------------------------


def set_unsubscribed(state: EmulatorState, emails: Iterable[str], *, on: bool) -> None:
    """Add (``on``) or remove addresses of the unsubscribe list; contacts follow."""
    for email in emails:
        if on:
            state.unsubscribed.add(email.casefold())
        else:
            state.unsubscribed.discard(email.casefold())
    for contact in state.contacts.values():
        mark_unsubscribed(contact, state)


async def post_unsubscribe(request: web.Request) -> web.Response:
    body = await read_body(request)
    email = body.get("email")
    if not isinstance(email, str) or "@" not in email or len(email) > 500:
        raise ValidationFailed.single("email", "Enter a valid email address.")
    set_unsubscribed(_state(request), [email], on=True)
    return web.json_response({"email": email}, status=201)


async def list_unsubscribed(request: web.Request) -> web.Response:
    rows = [{"email": email} for email in sorted(_state(request).unsubscribed)]
    return page(request, rows)


async def delete_unsubscribe(request: web.Request) -> web.Response:
    email = request.match_info["email"]
    state = _state(request)
    if email.casefold() not in state.unsubscribed:
        raise ObjectNotFound("UnsubscribedEmail")
    set_unsubscribed(state, [email], on=False)
    return web.json_response({"email": email})


def add_sequence_routes(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.get(f"{API}/sequence/", list_sequences),
            web.get(f"{API}/sequence/{{sequence_id}}/", get_sequence),
            web.post(f"{API}/sequence_subscription/", creates(create_subscription, status=201)),
            web.get(f"{API}/sequence_subscription/", list_subscriptions),
            web.get(f"{API}/sequence_subscription/{{subscription_id}}/", get_subscription),
            web.put(f"{API}/sequence_subscription/{{subscription_id}}/", put_subscription),
            web.delete(f"{API}/sequence_subscription/{{subscription_id}}/", delete_subscription),
            web.post(f"{API}/unsubscribe/email/", post_unsubscribe),
            web.get(f"{API}/unsubscribe/email/", list_unsubscribed),
            web.delete(f"{API}/unsubscribe/email/{{email}}/", delete_unsubscribe),
        ]
    )
