"""Control and inspection of the Close emulator over HTTP: ``/_emulator/…`` and ``GET /``.

No authentication: these routes exist for local runs, benchmarks and chaos tests only.
"""

from __future__ import annotations

import html
import json
from typing import Any

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from close_emulator.fields import JSONObject, custom_fields_of
from close_emulator.options import Fault
from close_emulator.state import EMULATOR_STATE, EmulatorState

CONTROL = "/_emulator"
_FAULTS = TypeAdapter(list[Fault])


def _state(request: web.Request) -> EmulatorState:
    return request.app[EMULATOR_STATE]


def _bad_request(message: str, details: Any = None) -> web.Response:
    body: JSONObject = {"error": message}
    if details is not None:
        body["details"] = details
    return web.json_response(body, status=400)


async def _json(request: web.Request) -> Any:
    raw = await request.read()
    return json.loads(raw) if raw.strip() else None


async def get_leads(request: web.Request) -> web.Response:
    state = _state(request)
    email = request.query.get("email")
    leads = state.leads_with_email(email) if email else list(state.leads.values())
    return web.json_response({"data": leads})


async def get_notes(request: web.Request) -> web.Response:
    state = _state(request)
    lead_id = request.query.get("lead_id")
    notes = state.notes_for(lead_id) if lead_id else list(state.notes.values())
    return web.json_response({"data": notes})


async def get_requests(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        return _bad_request("'since' must be an integer")
    records = [record.to_json() for record in state.requests_since(since)]
    return web.json_response({"data": records, "next": state.next_request_index})


async def get_config(request: web.Request) -> web.Response:
    return web.json_response(_state(request).options.model_dump(mode="json"))


async def post_config(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        patch = await _json(request)
    except ValueError:
        return _bad_request("body is not JSON")
    if not isinstance(patch, dict):
        return _bad_request("body must be a JSON object of option names and values")
    try:
        state.configure(**patch)
    except ValidationError as error:
        return _bad_request("invalid options", json.loads(error.json(include_url=False)))
    return web.json_response(state.options.model_dump(mode="json"))


async def get_faults(request: web.Request) -> web.Response:
    faults = [fault.model_dump(mode="json") for fault in _state(request).faults]
    return web.json_response({"data": faults})


async def post_faults(request: web.Request) -> web.Response:
    """Queue faults: one fault object, a list of them, or ``{"faults": [...]}``."""
    state = _state(request)
    try:
        payload = await _json(request)
    except ValueError:
        return _bad_request("body is not JSON")
    if isinstance(payload, dict) and set(payload) == {"faults"}:
        payload = payload["faults"]
    items = payload if isinstance(payload, list) else [payload]
    try:
        faults = _FAULTS.validate_python(items)
    except ValidationError as error:
        return _bad_request("invalid faults", json.loads(error.json(include_url=False)))
    for fault in faults:
        state.add_fault(fault)
    return await get_faults(request)


async def delete_faults(request: web.Request) -> web.Response:
    _state(request).faults.clear()
    return web.json_response({"data": []})


async def post_reset(request: web.Request) -> web.Response:
    try:
        payload = await _json(request)
    except ValueError:
        return _bad_request("body is not JSON")
    restore = isinstance(payload, dict) and payload.get("restore_options") is True
    _state(request).reset(restore_options=restore)
    return web.json_response({"status": "ok"})


def _contact_html(contact: JSONObject) -> str:
    emails = ", ".join(str(item["email"]) for item in contact["emails"])
    phones = ", ".join(str(item["phone_formatted"]) for item in contact["phones"])
    details = " · ".join(part for part in (emails, phones) if part)
    return f"<li>{html.escape(contact['display_name'] or '(no name)')} {html.escape(details)}</li>"


def _lead_html(lead: JSONObject, note_count: int) -> str:
    custom = ", ".join(
        f"{html.escape(key)}={html.escape(json.dumps(value))}"
        for key, value in custom_fields_of(lead).items()
    )
    contacts = "".join(_contact_html(contact) for contact in lead["contacts"])
    return (
        f"<tr><td><b>{html.escape(lead['display_name'] or '(no name)')}</b><br>"
        f"<code>{html.escape(lead['id'])}</code></td>"
        f"<td>{html.escape(lead['status_label'])}</td>"
        f"<td><ul>{contacts}</ul></td><td>{custom}</td><td>{note_count}</td>"
        f"<td>{html.escape(lead['date_created'])}</td></tr>"
    )


async def index_page(request: web.Request) -> web.Response:
    state = _state(request)
    leads = sorted(state.leads.values(), key=lambda lead: lead["date_created"], reverse=True)
    rows = "".join(_lead_html(lead, len(state.notes_for(lead["id"]))) for lead in leads)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta http-equiv='refresh' content='5'><title>Close emulator</title>"
        "<style>body{font-family:sans-serif}td{vertical-align:top;padding:4px 8px;"
        "border-bottom:1px solid #ddd}</style></head><body>"
        f"<h1>Close emulator: {len(leads)} lead(s)</h1>"
        "<p>A local stand-in for the Close API; nothing here reaches Close. "
        f"JSON: <a href='{CONTROL}/leads'>leads</a>, <a href='{CONTROL}/notes'>notes</a>, "
        f"<a href='{CONTROL}/requests'>requests</a>.</p>"
        "<table><tr><th>Lead</th><th>Status</th><th>Contacts</th><th>Custom fields</th>"
        f"<th>Notes</th><th>Created</th></tr>{rows}</table></body></html>"
    )
    return web.Response(text=page, content_type="text/html")


def add_control_routes(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.get("/", index_page),
            web.get(f"{CONTROL}/leads", get_leads),
            web.get(f"{CONTROL}/notes", get_notes),
            web.get(f"{CONTROL}/requests", get_requests),
            web.get(f"{CONTROL}/config", get_config),
            web.post(f"{CONTROL}/config", post_config),
            web.get(f"{CONTROL}/faults", get_faults),
            web.post(f"{CONTROL}/faults", post_faults),
            web.delete(f"{CONTROL}/faults", delete_faults),
            web.post(f"{CONTROL}/reset", post_reset),
        ]
    )
