"""The provider emulator's routes: Meta's Graph API lead read, HubSpot's CRM contact read,
Calendly's invitee read, each with the provider's auth, error and rate-limit answers; and the
``/_emulator/`` control routes (fixtures, tokens, faults, the request log).

Answers follow ``provider-apis.md``: Graph errors as ``{"error": {"message", "type", "code",
"error_subcode", "fbtrace_id"}}`` (190/463 for an expired token, 100/33 for an unknown id, 4
past the rate limit) with ``X-App-Usage`` and ``X-Business-Use-Case-Usage``; HubSpot errors as
``{"status": "error", "message", "correlationId", "category"}``, 429 with ``policyName`` and
the ``X-HubSpot-RateLimit-*`` headers; Calendly's ``{"title", "message"}``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from provider_emulator.state import (
    PROVIDERS,
    Provider,
    ProviderFault,
    ProviderOptions,
    ProviderState,
    RequestRecord,
    bundled_fixtures,
)

PROVIDER_STATE = web.AppKey("provider_state", ProviderState)


def _bearer(request: web.Request) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() in ("bearer", "oauth") else ""


def _record(request: web.Request, provider: str, token: str) -> RequestRecord:
    record = RequestRecord(provider, request.method, request.path, request.query_string)
    record.token = token
    request.app[PROVIDER_STATE].log(record)
    return record


def _answer(record: RequestRecord, body: Any, status: int, **headers: str) -> web.Response:
    record.status = status
    return web.json_response(body, status=status, headers=headers or None)


def _faulted(state: ProviderState, provider: str, record: RequestRecord) -> web.Response | None:
    fault = state.next_fault(provider)
    if fault is None:
        return None
    return _answer(record, fault.body, fault.status, **fault.headers)


# -- Meta ----------------------------------------------------------------------------------


def _graph_error(
    code: int, message: str, *, subcode: int | None = None, kind: str = "OAuthException"
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = uuid.uuid4().hex[:11]
    return {"error": error}


def _meta_usage(options: ProviderOptions) -> dict[str, str]:
    pct = options.meta_usage_percent
    usage = {"call_count": pct, "total_cputime": pct, "total_time": pct}
    business = {
        "104857600": [
            {
                "type": "lead_retrieval",
                **usage,
                "estimated_time_to_regain_access": options.meta_regain_minutes,
            }
        ]
    }
    return {"X-App-Usage": json.dumps(usage), "X-Business-Use-Case-Usage": json.dumps(business)}


async def meta_object(request: web.Request) -> web.Response:
    state = request.app[PROVIDER_STATE]
    token = request.query.get("access_token", "") or _bearer(request)
    record = _record(request, "meta", token)
    headers = _meta_usage(state.options)
    faulted = _faulted(state, "meta", record)
    if faulted is not None:
        return faulted
    verdict = state.token_state("meta", token)
    if verdict == "expired":
        body = _graph_error(
            190,
            "Error validating access token: Session has expired.",
            subcode=463,
        )
        return _answer(record, body, 400, **headers)
    if verdict == "invalid":
        return _answer(record, _graph_error(190, "Invalid OAuth access token."), 400, **headers)
    allowed, _, _ = state.take_call("meta", state.options.meta_rate_limit)
    if not allowed:
        body = _graph_error(4, "Application request limit reached")
        return _answer(record, body, state.options.meta_rate_limit_status, **headers)
    object_id = request.match_info["object_id"]
    lead = state.objects["meta"].get(object_id)
    if lead is None:
        message = (
            f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be "
            "loaded due to missing permissions, or does not support this operation"
        )
        body = _graph_error(100, message, subcode=33, kind="GraphMethodException")
        return _answer(record, body, 400, **headers)
    fields = [f for f in request.query.get("fields", "").split(",") if f]
    default = ("created_time", "id", "ad_id", "form_id", "field_data")
    shown = {k: v for k, v in lead.items() if k in (fields or default)}
    return _answer(record, shown, 200, **headers)


# -- HubSpot -------------------------------------------------------------------------------


def _hubspot_error(message: str, category: str, **extra: Any) -> dict[str, Any]:
    return {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
        **extra,
    }


async def hubspot_contact(request: web.Request) -> web.Response:
    state = request.app[PROVIDER_STATE]
    token = _bearer(request)
    record = _record(request, "hubspot", token)
    faulted = _faulted(state, "hubspot", record)
    if faulted is not None:
        return faulted
    if state.token_state("hubspot", token) != "ok":
        body = _hubspot_error(
            "Authentication credentials not found. This API supports OAuth 2.0 authentication",
            "INVALID_AUTHENTICATION",
        )
        return _answer(record, body, 401)
    limit = state.options.hubspot_rate_limit
    allowed, remaining, _ = state.take_call("hubspot", limit)
    headers = {
        "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(state.options.window_seconds * 1000)),
        "X-HubSpot-RateLimit-Max": str(limit if limit is not None else 1000),
        "X-HubSpot-RateLimit-Remaining": str(max(0, remaining)),
    }
    if not allowed:
        body = {
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": "TEN_SECONDLY_ROLLING",
            "requestId": str(uuid.uuid4()),
        }
        return _answer(record, body, 429, **headers)
    contact_id = request.match_info["contact_id"]
    contact = state.objects["hubspot"].get(contact_id)
    reads = state.read_count("hubspot", contact_id)
    if contact is None or reads <= state.options.unreadable_reads:
        body = state.options.hubspot_not_found_body
        if body is None:
            body = _hubspot_error(
                "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND"
            )
        return _answer(record, body, 404, **headers)
    wanted = [p for p in request.query.get("properties", "").split(",") if p]
    properties = contact.get("properties", {})
    shown = {
        **contact,
        "properties": {p: properties.get(p) for p in wanted} if wanted else properties,
    }
    return _answer(record, shown, 200, **headers)


# -- Calendly ------------------------------------------------------------------------------


async def calendly_invitee(request: web.Request) -> web.Response:
    state = request.app[PROVIDER_STATE]
    token = _bearer(request)
    record = _record(request, "calendly", token)
    faulted = _faulted(state, "calendly", record)
    if faulted is not None:
        return faulted
    if state.token_state("calendly", token) != "ok":
        body = {"title": "Unauthenticated", "message": "The access token is invalid"}
        return _answer(record, body, 401)
    allowed, _, left = state.take_call("calendly", state.options.calendly_rate_limit)
    if not allowed:
        body = {"title": "Too Many Requests", "message": "Rate limit exceeded"}
        return _answer(record, body, 429, **{"Retry-After": str(max(1, int(left)))})
    key = (
        f"/scheduled_events/{request.match_info['event']}/invitees/{request.match_info['invitee']}"
    )
    invitee = state.objects["calendly"].get(key)
    if invitee is None:
        body = {
            "title": "Resource Not Found",
            "message": "The server could not find the requested resource.",
        }
        return _answer(record, body, 404)
    return _answer(record, {"resource": invitee}, 200)


# -- control -------------------------------------------------------------------------------


def _provider(value: Any) -> Provider:
    for provider in PROVIDERS:
        if provider == value:
            return provider
    raise web.HTTPBadRequest(text=f"provider must be one of {', '.join(PROVIDERS)}")


async def control_add(request: web.Request) -> web.Response:
    """``POST /_emulator/<provider>/objects`` ``{"id": ..., "body": {...}}``."""
    data = await request.json()
    provider = _provider(request.match_info["provider"])
    request.app[PROVIDER_STATE].add(provider, str(data["id"]), data["body"])
    return web.json_response({"ok": True}, status=201)


async def control_fault(request: web.Request) -> web.Response:
    """``POST /_emulator/faults`` ``{"provider", "status", "body", "headers", "count"}``."""
    data = await request.json()
    fault = ProviderFault(
        provider=_provider(data.get("provider")),
        status=int(data.get("status", 500)),
        body=data.get("body"),
        headers=dict(data.get("headers") or {}),
        count=int(data.get("count", 1)),
    )
    request.app[PROVIDER_STATE].add_fault(fault)
    return web.json_response({"ok": True}, status=201)


async def control_token(request: web.Request) -> web.Response:
    """``POST /_emulator/tokens`` ``{"provider", "token", "expired": true|false}``."""
    data = await request.json()
    state = request.app[PROVIDER_STATE]
    provider, token = _provider(data.get("provider")), str(data.get("token", ""))
    if data.get("expired", True):
        state.expire_token(provider, token)
    else:
        state.renew_token(provider, token)
    return web.json_response({"ok": True})


async def control_requests(request: web.Request) -> web.Response:
    state = request.app[PROVIDER_STATE]
    return web.json_response({"requests": [r.to_json() for r in state.requests]})


async def control_objects(request: web.Request) -> web.Response:
    return web.json_response(request.app[PROVIDER_STATE].objects)


def create_provider_emulator_app(
    options: ProviderOptions | None = None, fixtures: dict[str, dict[str, Any]] | None = None
) -> web.Application:
    """The emulator as an aiohttp application (``fixtures``: default the bundled ones)."""
    app = web.Application()
    app[PROVIDER_STATE] = ProviderState(
        options or ProviderOptions(), bundled_fixtures() if fixtures is None else fixtures
    )
    app.router.add_get("/meta/{version}/{object_id}", meta_object)
    app.router.add_get("/hubspot/crm/v3/objects/contacts/{contact_id}", hubspot_contact)
    app.router.add_get("/calendly/scheduled_events/{event}/invitees/{invitee}", calendly_invitee)
    app.router.add_post("/_emulator/{provider}/objects", control_add)
    app.router.add_post("/_emulator/faults", control_fault)
    app.router.add_post("/_emulator/tokens", control_token)
    app.router.add_get("/_emulator/requests", control_requests)
    app.router.add_get("/_emulator/objects", control_objects)
    return app
