"""Control and inspection of the Close emulator over HTTP: ``/_emulator/…``, ``GET /`` (every
lead) and ``GET /lead/{id}/`` (one lead, where its ``html_url`` points when ``app_url`` is the
emulator's own address).

No authentication: these routes exist for local runs, benchmarks and chaos tests only.
"""

from __future__ import annotations

import html
import json
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import TypeAdapter, ValidationError

from close_emulator.fields import JSONObject, custom_fields_of
from close_emulator.options import Fault
from close_emulator.state import EMULATOR_STATE, EmulatorState
from close_emulator.team import CustomFieldSpec

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


def _objects(table: str) -> Handler:
    """``GET /_emulator/<table>[?lead_id=]``: the follow-up objects the emulator holds."""

    async def handler(request: web.Request) -> web.Response:
        rows = list(getattr(_state(request), table).values())
        lead_id = request.query.get("lead_id")
        return web.json_response({"data": [r for r in rows if lead_id in (None, r["lead_id"])]})

    return handler


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


_STYLE = (
    "<style>body{font-family:sans-serif;margin:1rem 1.5rem}td,th{vertical-align:top;"
    "padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}"
    "pre{white-space:pre-wrap;background:#f6f7f9;padding:.5rem}</style>"
)


def _page(title: str, body: str, *, refresh: bool = False) -> web.Response:
    meta = "<meta http-equiv='refresh' content='5'>" if refresh else ""
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'>{meta}"
        f"<title>{html.escape(title)}</title>{_STYLE}</head><body>{body}</body></html>"
    )
    return web.Response(text=text, content_type="text/html")


def _contact_text(contact: JSONObject) -> str:
    emails = ", ".join(str(item["email"]) for item in contact["emails"])
    phones = ", ".join(str(item["phone_formatted"]) for item in contact["phones"])
    details = " · ".join(part for part in (emails, phones) if part)
    return f"{html.escape(contact['display_name'] or '(no name)')} {html.escape(details)}"


def _contact_html(contact: JSONObject) -> str:
    return f"<li>{_contact_text(contact)}</li>"


def _custom_named(obj: JSONObject, specs: list[CustomFieldSpec]) -> list[tuple[str, Any]]:
    """The custom field values of a lead or contact, by field name (the id when unknown)."""
    names = {f"custom.{spec.id}": spec.name for spec in specs}
    return [(names.get(key, key), value) for key, value in custom_fields_of(obj).items()]


def _value(value: Any) -> str:
    if isinstance(value, list):
        return html.escape(", ".join(str(item) for item in value))
    return html.escape(str(value))


def _lead_html(lead: JSONObject, note_count: int, specs: list[CustomFieldSpec]) -> str:
    custom = "<br>".join(
        f"{html.escape(name)}: {_value(value)}" for name, value in _custom_named(lead, specs)
    )
    contacts = "".join(_contact_html(contact) for contact in lead["contacts"])
    lead_id = html.escape(lead["id"])
    return (
        f"<tr data-lead='{lead_id}'><td><a href='/lead/{lead_id}/'>"
        f"<b>{html.escape(lead['display_name'] or '(no name)')}</b></a><br>"
        f"<code>{lead_id}</code></td>"
        f"<td>{html.escape(lead['status_label'])}</td>"
        f"<td><ul>{contacts}</ul></td><td>{custom}</td><td>{note_count}</td>"
        f"<td>{html.escape(lead['date_created'])}</td></tr>"
    )


def _org_html(state: EmulatorState) -> str:
    options = state.options
    fields = ", ".join(f"{spec.name} ({spec.type})" for spec in options.lead_custom_fields)
    statuses = ", ".join(status.label for status in options.lead_statuses)
    users = ", ".join(user.name + ("" if user.active else " (inactive)") for user in options.users)
    return (
        f"<p>Organisation <b>{html.escape(options.organization_name)}</b>. "
        f"Lead statuses: {html.escape(statuses)}. Lead custom fields: "
        f"{html.escape(fields or 'none')}. Users: {html.escape(users)}.</p>"
    )


async def index_page(request: web.Request) -> web.Response:
    state = _state(request)
    specs = state.options.lead_custom_fields
    leads = sorted(state.leads.values(), key=lambda lead: lead["date_created"], reverse=True)
    rows = "".join(_lead_html(lead, len(state.notes_for(lead["id"])), specs) for lead in leads)
    body = (
        f"<h1>Close emulator: {len(leads)} lead(s)</h1>"
        "<p>A local stand-in for the Close API; nothing here reaches Close. "
        f"JSON: <a href='{CONTROL}/leads'>leads</a>, <a href='{CONTROL}/notes'>notes</a>, "
        f"<a href='{CONTROL}/requests'>requests</a>, <a href='{CONTROL}/config'>options</a>."
        f"</p>{_org_html(state)}"
        "<table><tr><th>Lead</th><th>Status</th><th>Contacts</th><th>Custom fields</th>"
        f"<th>Notes</th><th>Created</th></tr>{rows}</table>"
    )
    return _page("Close emulator", body, refresh=True)


async def lead_page(request: web.Request) -> web.Response:
    """``GET /lead/{id}/``: one lead as the emulator holds it (what ``html_url`` points at)."""
    state = _state(request)
    lead = state.leads.get(request.match_info["lead_id"])
    if lead is None:
        body = "<h1>No such lead</h1><p>The emulator keeps leads only while it runs.</p>"
        response = _page("No such lead", body + "<p><a href='/'>All leads</a></p>")
        response.set_status(404)
        return response
    options = state.options
    rows = [
        ("Id", f"<code>{html.escape(lead['id'])}</code>"),
        ("Status", html.escape(lead["status_label"])),
        ("Description", html.escape(lead.get("description") or "")),
        ("URL", html.escape(lead.get("url") or "")),
        ("Created", html.escape(lead["date_created"])),
        *(
            (html.escape(name), _value(value))
            for name, value in _custom_named(lead, options.lead_custom_fields)
        ),
    ]
    contacts = "".join(
        "<li>"
        + _contact_text(contact)
        + "".join(
            f"<br>{html.escape(name)}: {_value(value)}"
            for name, value in _custom_named(contact, options.contact_custom_fields)
        )
        + "</li>"
        for contact in lead["contacts"]
    )
    notes = "".join(
        f"<h3>{html.escape(note['date_created'])}</h3><pre>{html.escape(note['note'])}</pre>"
        for note in state.notes_for(lead["id"])
    )
    body = (
        f"<p><a href='/'>All leads</a></p><h1>{html.escape(lead['display_name'] or '(no name)')}"
        "</h1><table>"
        + "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
        + f"</table><h2>Contacts</h2><ul>{contacts}</ul><h2>Notes</h2>"
        + (notes or "<p>None.</p>")
    )
    return _page(f"Lead {lead['id']}", body)


def add_control_routes(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.get("/", index_page),
            web.get("/lead/{lead_id}/", lead_page),
            web.get(f"{CONTROL}/leads", get_leads),
            web.get(f"{CONTROL}/notes", get_notes),
            web.get(f"{CONTROL}/requests", get_requests),
            web.get(f"{CONTROL}/tasks", _objects("tasks")),
            web.get(f"{CONTROL}/subscriptions", _objects("subscriptions")),
            web.get(f"{CONTROL}/opportunities", _objects("opportunities")),
            web.get(f"{CONTROL}/activities", _objects("custom_activities")),
            web.get(f"{CONTROL}/merges", _objects("merges")),
            web.get(f"{CONTROL}/config", get_config),
            web.post(f"{CONTROL}/config", post_config),
            web.get(f"{CONTROL}/faults", get_faults),
            web.post(f"{CONTROL}/faults", post_faults),
            web.delete(f"{CONTROL}/faults", delete_faults),
            web.post(f"{CONTROL}/reset", post_reset),
        ]
    )
