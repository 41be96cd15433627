"""The ``/api/v1/`` routes of the Close emulator (auth, limits and faults are middleware)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from close_emulator.fields import JSONObject, ValidationFailed, custom_fields_of
from close_emulator.objects import (
    create_contact,
    create_lead,
    create_note,
    update_contact,
    update_lead,
)
from close_emulator.search import run_search
from close_emulator.state import EMULATOR_STATE, EmulatorState, RequestRecord
from close_emulator.team import CustomFieldSpec

API = "/api/v1"
REQUEST_RECORD = web.RequestKey("emulator_request_record", RequestRecord)

# Werkzeug's stock texts: Close answers 401 with the Unauthorized one (close-api.md §1); that
# it also uses the 404/405/415 ones for unknown routes is an assumption.
NOT_FOUND = (
    "The requested URL was not found on the server. If you entered the URL manually please "
    "check your spelling and try again."
)
METHOD_NOT_ALLOWED = "The method is not allowed for the requested URL."
UNSUPPORTED_MEDIA = "The server does not support the media type transmitted in the request."


class ObjectNotFound(Exception):
    """An unknown id: 404 ``{"error": "Empty query: <Model> matching query does not exist."}``."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.body = {"error": f"Empty query: {model} matching query does not exist."}


def one(table: Mapping[str, JSONObject], request: web.Request, key: str, model: str) -> JSONObject:
    """The object the path segment ``key`` names in ``table``, or Close's 404 for ``model``."""
    found = table.get(request.match_info[key])
    if found is None:
        raise ObjectNotFound(model)
    return found


def _state(request: web.Request) -> EmulatorState:
    return request.app[EMULATOR_STATE]


def _note_object(request: web.Request, object_id: str) -> None:
    record = request.get(REQUEST_RECORD)
    if record is not None:
        record.object_id = object_id


def creates(
    make: Callable[[JSONObject, EmulatorState], JSONObject], *, status: int = 200
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The ``POST`` handler of a kind of object: ``make(body, state)`` creates it, the request
    log names it, the answer is the object."""

    async def post(request: web.Request) -> web.Response:
        made = make(await read_body(request), _state(request))
        _note_object(request, made["id"])
        return web.json_response(made, status=status)

    return post


async def read_body(request: web.Request) -> JSONObject:
    """The JSON object of a write; 415 for another media type, 400 for anything unreadable."""
    raw = await request.read()
    if not raw.strip():
        return {}
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text=json.dumps({"error": UNSUPPORTED_MEDIA}), content_type="application/json"
        )
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        # Close's text for undecodable JSON is UNKNOWN.
        raise ValidationFailed({"errors": ["Invalid JSON body."], "field-errors": {}}) from None
    if not isinstance(body, dict):
        raise ValidationFailed({"errors": ["The body must be a JSON object."], "field-errors": {}})
    return body


def _fields_param(request: web.Request) -> list[str] | None:
    raw = request.query.get("_fields")
    return [name.strip() for name in raw.split(",") if name.strip()] if raw else None


def _project(obj: JSONObject, fields: list[str] | None) -> JSONObject:
    if not fields:
        return obj
    picked: JSONObject = {}
    for name in fields:
        if name == "custom":
            picked.update(custom_fields_of(obj))
        elif name in obj:
            picked[name] = obj[name]
    return picked


def _int_param(request: web.Request, name: str, default: int, high: int | None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed.single(name, "Must be an integer.") from None
    if value < 0 or (high is not None and value > high):
        limit = f" (max {high})" if high is not None else ""
        raise ValidationFailed.single(name, f"Out of range{limit}.")
    return value


def _lead(request: web.Request) -> JSONObject:
    return one(_state(request).leads, request, "lead_id", "Lead")


async def post_lead(request: web.Request) -> web.Response:
    lead = create_lead(await read_body(request), _state(request))
    _note_object(request, lead["id"])
    return web.json_response(lead)


async def list_leads(request: web.Request) -> web.Response:
    state = _state(request)
    if "query" in request.query:
        # Deprecated since 2022 (close-api.md §3a) and not modelled: fail loudly.
        raise ValidationFailed.single("query", "Not supported by the emulator; use /data/search/.")
    limit = _int_param(request, "_limit", 100, state.options.max_list_limit)
    skip = _int_param(request, "_skip", 0, None)
    leads = list(state.leads.values())
    fields = _fields_param(request)
    page = [_project(lead, fields) for lead in leads[skip : skip + limit]]
    return web.json_response({"has_more": skip + limit < len(leads), "data": page})


async def get_lead(request: web.Request) -> web.Response:
    return web.json_response(_project(_lead(request), _fields_param(request)))


async def put_lead(request: web.Request) -> web.Response:
    lead = _lead(request)
    body = await read_body(request)
    _note_object(request, lead["id"])
    return web.json_response(update_lead(lead, body, _state(request)))


async def post_contact(request: web.Request) -> web.Response:
    contact = create_contact(await read_body(request), _state(request))
    _note_object(request, contact["id"])
    return web.json_response(contact)


async def get_contact(request: web.Request) -> web.Response:
    contact = one(_state(request).contacts, request, "contact_id", "Contact")
    return web.json_response(_project(contact, _fields_param(request)))


async def put_contact(request: web.Request) -> web.Response:
    contact = one(_state(request).contacts, request, "contact_id", "Contact")
    body = await read_body(request)
    _note_object(request, contact["id"])
    return web.json_response(update_contact(contact, body, _state(request)))


async def post_note(request: web.Request) -> web.Response:
    note = create_note(await read_body(request), _state(request))
    _note_object(request, note["id"])
    return web.json_response(note)


async def post_form_submission(request: web.Request) -> web.Response:
    # Form submissions are created only by Close-hosted forms (close-api.md §5); the exact
    # refusal code is UNKNOWN, 405 as suggested.
    return web.json_response({"error": METHOD_NOT_ALLOWED}, status=405)


async def list_form_submissions(request: web.Request) -> web.Response:
    return web.json_response({"has_more": False, "data": []})


async def list_statuses(request: web.Request) -> web.Response:
    options = _state(request).options
    data = [
        {"id": status.id, "label": status.label, "organization_id": options.organization_id}
        for status in options.lead_statuses
    ]
    return web.json_response({"has_more": False, "data": data})


def _field_json(spec: CustomFieldSpec, organization_id: str) -> JSONObject:
    return {
        **spec.model_dump(),
        "is_shared": False,
        "editable_with_roles": [],
        "organization_id": organization_id,
    }


def _specs(request: web.Request) -> tuple[list[CustomFieldSpec], str]:
    options = _state(request).options
    kind = request.match_info["object_type"]
    if kind == "lead":
        return options.lead_custom_fields, options.organization_id
    if kind == "contact":
        return options.contact_custom_fields, options.organization_id
    raise web.HTTPNotFound()


async def custom_field_schema(request: web.Request) -> web.Response:
    specs, org = _specs(request)
    return web.json_response({"fields": [_field_json(spec, org) for spec in specs]})


async def list_custom_fields(request: web.Request) -> web.Response:
    specs, org = _specs(request)
    data = [_field_json(spec, org) for spec in specs]
    return web.json_response({"has_more": False, "data": data})


async def search(request: web.Request) -> web.Response:
    state = _state(request)
    answer: Any = run_search(
        await read_body(request), state.index, time.monotonic(), state.options, state.live_object
    )
    return web.json_response(answer)


def add_api_routes(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.post(f"{API}/lead/", post_lead),
            web.get(f"{API}/lead/", list_leads),
            web.get(f"{API}/lead/{{lead_id}}/", get_lead),
            web.put(f"{API}/lead/{{lead_id}}/", put_lead),
            web.post(f"{API}/contact/", post_contact),
            web.get(f"{API}/contact/{{contact_id}}/", get_contact),
            web.put(f"{API}/contact/{{contact_id}}/", put_contact),
            web.post(f"{API}/activity/note/", post_note),
            web.post(f"{API}/activity/form_submission/", post_form_submission),
            web.get(f"{API}/activity/form_submission/", list_form_submissions),
            web.get(f"{API}/status/lead/", list_statuses),
            web.get(f"{API}/custom_field_schema/{{object_type}}/", custom_field_schema),
            web.get(f"{API}/custom_field/{{object_type}}/", list_custom_fields),
            web.post(f"{API}/data/search/", search),
        ]
    )
