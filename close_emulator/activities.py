"""The emulator's activity lists and custom activities (close-api-actions.md §7).

- ``GET /activity/note/``: the notes, newest first, filtered by ``lead_id`` (``__in``),
  ``contact_id``, ``user_id``, ``id`` and ``date_created__gt/gte/lt/lte``, paged (``_limit``,
  ``_skip``, ``has_more``); the ``POST`` is in ``api.py``;
- ``GET /custom_activity/``: the custom activity types (``EmulatorOptions.custom_activity_types``)
  with their fields;
- ``POST /activity/custom/``: field values as top-level ``custom.cf_...`` keys (a field's name
  is accepted too), required fields checked unless ``status`` is ``draft``;
- ``GET /activity/custom/`` (filtering by type needs ``lead_id``), ``GET /activity/custom/{id}/``.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from close_emulator.api import API, ObjectNotFound, creates, one
from close_emulator.deals import in_filter
from close_emulator.fields import (
    DOES_NOT_EXIST,
    REQUIRED,
    Errors,
    JSONObject,
    ValidationFailed,
    custom_key,
    missing_field_message,
)
from close_emulator.options import EmulatorOptions
from close_emulator.sales import created_filter, find_user, one_of, page
from close_emulator.state import EMULATOR_STATE, EmulatorState, now_iso
from close_emulator.team import CustomActivityType


def _state(request: web.Request) -> EmulatorState:
    return request.app[EMULATOR_STATE]


def _type_json(kind: CustomActivityType, options: EmulatorOptions) -> JSONObject:
    return {
        "id": kind.id,
        "name": kind.name,
        "description": kind.description,
        "api_create_only": kind.api_create_only,
        "is_archived": kind.is_archived,
        "editable_with_roles": [],
        "organization_id": options.organization_id,
        "fields": [{**f.model_dump(), "editable_with_roles": []} for f in kind.fields],
    }


async def list_activity_types(request: web.Request) -> web.Response:
    options = _state(request).options
    return page(request, [_type_json(k, options) for k in options.custom_activity_types])


async def get_activity_type(request: web.Request) -> web.Response:
    options = _state(request).options
    for kind in options.custom_activity_types:
        if kind.id == request.match_info["type_id"]:
            return web.json_response(_type_json(kind, options))
    raise ObjectNotFound("CustomActivityType")


def _activity_fields(body: JSONObject, kind: CustomActivityType, errors: Errors) -> JSONObject:
    values: JSONObject = {}
    for key, value in body.items():
        parsed = custom_key(key)
        if parsed is None:
            continue
        field = next((f for f in kind.fields if parsed[0] in (f.id, f.name)), None)
        if field is None or parsed[1] is not None:
            errors.add(key, missing_field_message(parsed[0]))
            continue
        if value is None:
            continue
        items = value if field.accepts_multiple_values and isinstance(value, list) else [value]
        problem = next((p for p in map(field.check_value, items) if p), None)
        if problem:
            errors.add(key, problem)
        else:
            values[f"custom.{field.id}"] = value
    return values


def create_custom_activity(body: JSONObject, state: EmulatorState) -> JSONObject:
    options, errors = state.options, Errors()
    type_id = body.get("custom_activity_type_id")
    kind = next((k for k in options.custom_activity_types if k.id == type_id), None)
    if type_id is None:
        errors.add("custom_activity_type_id", REQUIRED)
    elif kind is None:
        errors.add("custom_activity_type_id", DOES_NOT_EXIST)
    lead_id = body.get("lead_id")
    lead = state.leads.get(lead_id) if isinstance(lead_id, str) else None
    if lead_id is None:
        errors.add("lead", REQUIRED)
    elif lead is None:
        errors.add("lead", DOES_NOT_EXIST)
    if body.get("contact_id") is not None and body["contact_id"] not in state.contacts:
        errors.add("contact", DOES_NOT_EXIST)
    status = body.get("status", "published")
    if status not in ("published", "draft"):
        errors.add("status", "Not a valid choice.")
    values = _activity_fields(body, kind, errors) if kind is not None else {}
    if kind is not None and status == "published":
        for field in kind.fields:
            if field.required and f"custom.{field.id}" not in values:
                errors.add(f"custom.{field.id}", REQUIRED)
    errors.raise_if_any()
    assert kind is not None and lead is not None
    user = find_user(options, str(body.get("user_id") or options.user_id))
    stamp = now_iso()
    activity: JSONObject = {
        "_type": "CustomActivity",
        "id": state.new_id("acti_"),
        "custom_activity_type_id": kind.id,
        "lead_id": lead["id"],
        "contact_id": body.get("contact_id"),
        "status": status,
        "last_published_at": stamp if status == "published" else None,
        "source": "api",
        "pinned": bool(body.get("pinned", False)),
        "pinned_at": None,
        "mentions": [],
        "users": [],
        "user_id": user.id if user else options.user_id,
        "user_name": user.name if user else options.user_name,
        "organization_id": options.organization_id,
        "created_by": options.user_id,
        "updated_by": options.user_id,
        "activity_at": body.get("activity_at") or stamp,
        "date_created": stamp,
        "date_updated": stamp,
        **values,
    }
    state.custom_activities[activity["id"]] = activity
    state.events.record("custom_activity", "created", activity)
    return activity


async def list_notes(request: web.Request) -> web.Response:
    q = request.query
    tests: list[Callable[[JSONObject], bool]] = [created_filter("date_created", q)]
    for name in ("lead_id", "contact_id", "user_id", "id"):
        wanted = in_filter(q, name)
        if wanted is not None:
            tests.append(one_of(name, wanted))
    state = _state(request)
    lead = q.get("lead_id")
    notes = state.notes_for(lead) if lead is not None else list(state.notes.values())
    # Close lists activities newest first; notes are kept in the order they were made.
    return page(request, [n for n in reversed(notes) if all(t(n) for t in tests)])


async def list_custom_activities(request: web.Request) -> web.Response:
    q = request.query
    if (
        "custom_activity_type_id" in q or "custom_activity_type_id__in" in q
    ) and "lead_id" not in q:
        raise ValidationFailed.single("lead_id", "Filtering by type requires lead_id.")
    tests: list[Callable[[JSONObject], bool]] = [created_filter("date_created", q)]
    for name in ("lead_id", "contact_id", "user_id", "custom_activity_type_id", "id"):
        wanted = in_filter(q, name)
        if wanted is not None:
            tests.append(one_of(name, wanted))
    rows = [a for a in _state(request).custom_activities.values() if all(t(a) for t in tests)]
    return page(request, rows)


async def get_custom_activity(request: web.Request) -> web.Response:
    activities = _state(request).custom_activities
    return web.json_response(one(activities, request, "activity_id", "CustomActivity"))


def add_activity_routes(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.get(f"{API}/custom_activity/", list_activity_types),
            web.get(f"{API}/custom_activity/{{type_id}}/", get_activity_type),
            web.get(f"{API}/activity/note/", list_notes),
            web.post(f"{API}/activity/custom/", creates(create_custom_activity)),
            web.get(f"{API}/activity/custom/", list_custom_activities),
            web.get(f"{API}/activity/custom/{{activity_id}}/", get_custom_activity),
        ]
    )
