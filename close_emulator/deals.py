"""The emulator's opportunities (close-api-actions.md §5).

- ``GET /pipeline/`` and ``GET /status/opportunity/``: the configured pipelines
  (``EmulatorOptions.pipelines``); the first status of a pipeline is a new opportunity's default.
- ``POST /opportunity/``: ``value`` in the currency's minor unit (cents) as an integer, the
  organisation's ``value_currency`` on every answer, ``value_formatted`` as recorded
  (``500`` → ``"$5 monthly"``); a status of type ``won`` sets ``date_won``. Keys the create
  schema does not know are refused (the schema has ``additionalProperties: false``).
- ``GET /opportunity/`` with its filters and aggregates; ``GET``/``PUT /opportunity/{id}/``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from close_emulator.api import API, creates, one, read_body
from close_emulator.events import snapshot
from close_emulator.fields import (
    DOES_NOT_EXIST,
    REQUIRED,
    Errors,
    JSONObject,
)
from close_emulator.options import EmulatorOptions
from close_emulator.sales import created_filter, find_user, one_of, page
from close_emulator.state import EMULATOR_STATE, EmulatorState, now_iso
from close_emulator.team import Pipeline, PipelineStatus

PERIODS = ("one_time", "monthly", "annual")
OPPORTUNITY_KEYS = frozenset(
    {
        "lead_id",
        "status_id",
        "pipeline_id",
        "value",
        "value_period",
        "confidence",
        "note",
        "note_html",
        "contact_id",
        "user_id",
        "created_by",
        "date_created",
        "date_won",
        "attachments",
    }
)
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "AUD": "A$"}


def _state(request: web.Request) -> EmulatorState:
    return request.app[EMULATOR_STATE]


# -- pipelines ------------------------------------------------------------------------------


def status_of(options: EmulatorOptions, status_id: str) -> tuple[Pipeline, PipelineStatus] | None:
    for pipeline in options.pipelines:
        for status in pipeline.statuses:
            if status.id == status_id:
                return pipeline, status
    return None


def _pipeline_json(pipeline: Pipeline, options: EmulatorOptions) -> JSONObject:
    return {
        "id": pipeline.id,
        "name": pipeline.name,
        "organization_id": options.organization_id,
        "statuses": [s.model_dump() for s in pipeline.statuses],
    }


async def list_pipelines(request: web.Request) -> web.Response:
    options = _state(request).options
    return page(request, [_pipeline_json(p, options) for p in options.pipelines])


async def list_opportunity_statuses(request: web.Request) -> web.Response:
    options = _state(request).options
    rows = [
        {**s.model_dump(), "organization_id": options.organization_id, "pipeline_id": p.id}
        for p in options.pipelines
        for s in p.statuses
    ]
    return page(request, rows)


# -- opportunities --------------------------------------------------------------------------


def formatted(cents: int | None, period: str, currency: str) -> str | None:
    """Close's ``value_formatted``: ``$5 monthly``, ``$1,000``, ``$12.50 annual``."""
    if cents is None:
        return None
    whole, rest = divmod(abs(cents), 100)
    amount = f"{whole:,}" if rest == 0 else f"{whole:,}.{rest:02d}"
    text = ("-" if cents < 0 else "") + _SYMBOLS.get(currency, currency + " ") + amount
    return text if period == "one_time" else f"{text} {period}"


def _set_status(opportunity: JSONObject, pipeline: Pipeline, status: PipelineStatus) -> None:
    today = datetime.now(UTC).date().isoformat()
    opportunity.update(
        status_id=status.id,
        status_label=status.label,
        status_type=status.type,
        status_display_name=status.label,
        pipeline_id=pipeline.id,
        pipeline_name=pipeline.name,
        date_won=today if status.type == "won" else None,
        date_lost=today if status.type == "lost" else None,
    )


def _values(opportunity: JSONObject, currency: str) -> None:
    cents, period = opportunity["value"], opportunity["value_period"]
    opportunity["value_formatted"] = formatted(cents, period, currency)
    opportunity["value_currency"] = currency
    yearly = {"one_time": 1, "monthly": 12, "annual": 1}[period]
    opportunity["annualized_value"] = None if cents is None else cents * yearly
    confidence = opportunity["confidence"] or 0
    opportunity["expected_value"] = None if cents is None else round(cents * confidence / 100)


def _check_numbers(body: JSONObject, errors: Errors) -> None:
    value = body.get("value")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        errors.add("value", "Must be an integer (the value in cents).")
    if body.get("value_period", "one_time") not in PERIODS:
        errors.add("value_period", "Not a valid choice.")
    confidence = body.get("confidence")
    if confidence is not None and (not isinstance(confidence, int) or not 0 <= confidence <= 100):
        errors.add("confidence", "Must be an integer between 0 and 100.")


def _opportunity_status(
    body: JSONObject, options: EmulatorOptions, errors: Errors
) -> tuple[Pipeline, PipelineStatus] | None:
    pipeline = None
    if body.get("pipeline_id") is not None:
        pipeline = next((p for p in options.pipelines if p.id == body["pipeline_id"]), None)
        if pipeline is None:
            errors.add("pipeline_id", DOES_NOT_EXIST)
            return None
    if body.get("status_id") is None:
        chosen = pipeline or options.pipelines[0]
        return chosen, chosen.statuses[0]
    found = status_of(options, str(body["status_id"]))
    if found is None or (pipeline is not None and found[0].id != pipeline.id):
        errors.add("status_id", "Not a status of the pipeline." if found else DOES_NOT_EXIST)
        return None
    return found


def create_opportunity(body: JSONObject, state: EmulatorState) -> JSONObject:
    options, errors = state.options, Errors()
    for key in body:
        if key not in OPPORTUNITY_KEYS and not key.startswith("custom."):
            errors.add(key, "Unknown field.")  # the create schema has additionalProperties false
    lead_id = body.get("lead_id")
    lead = state.leads.get(lead_id) if isinstance(lead_id, str) else None
    if lead_id is None:
        errors.add("lead", REQUIRED)
    elif lead is None:
        errors.add("lead", DOES_NOT_EXIST)
    contact_id = body.get("contact_id")
    if contact_id is not None and contact_id not in state.contacts:
        errors.add("contact", DOES_NOT_EXIST)
    user_id = body.get("user_id") or options.user_id
    user = find_user(options, str(user_id))
    if user is None:
        errors.add("user_id", DOES_NOT_EXIST)
    _check_numbers(body, errors)
    found = _opportunity_status(body, options, errors)
    errors.raise_if_any()
    assert lead is not None and found is not None and user is not None
    stamp = now_iso()
    note = body.get("note_html") or body.get("note") or ""
    opportunity: JSONObject = {
        "id": state.new_id("oppo_"),
        "lead_id": lead["id"],
        "lead_name": lead["display_name"],
        "contact_id": contact_id,
        "contact_name": state.contacts[contact_id]["display_name"] if contact_id else None,
        "value": body.get("value"),
        "value_period": body.get("value_period", "one_time"),
        "confidence": body.get("confidence", 0),
        "note": note,
        "user_id": user.id,
        "user_name": user.name,
        "integration_links": [],
        "organization_id": options.organization_id,
        "created_by": options.user_id,
        "created_by_name": options.user_name,
        "updated_by": options.user_id,
        "updated_by_name": options.user_name,
        "date_created": stamp,
        "date_updated": stamp,
        **{k: v for k, v in body.items() if k.startswith("custom.")},
    }
    _set_status(opportunity, *found)
    _values(opportunity, options.value_currency)
    state.opportunities[opportunity["id"]] = opportunity
    state.events.record("opportunity", "created", opportunity)
    return opportunity


def in_filter(q: Any, name: str) -> set[str] | None:
    if f"{name}__in" in q:
        return set(q[f"{name}__in"].split(","))
    return {q[name]} if name in q else None


def _opportunity_filters(request: web.Request) -> list[Callable[[JSONObject], bool]]:
    q = request.query
    tests: list[Callable[[JSONObject], bool]] = [created_filter("date_created", q)]
    if "lead_id" in q:
        tests.append(lambda o: o["lead_id"] == q["lead_id"])
    for name in ("user_id", "status_id", "status_type", "status_label", "value_period"):
        wanted = in_filter(q, name)
        if wanted is not None:
            tests.append(one_of(name, wanted))
    return tests


async def list_opportunities(request: web.Request) -> web.Response:
    tests = _opportunity_filters(request)
    rows = [o for o in _state(request).opportunities.values() if all(t(o) for t in tests)]
    totals = {
        f"total_value_{p}": sum(o["value"] or 0 for o in rows if o["value_period"] == p)
        for p in PERIODS
    }
    counts = {p: sum(1 for o in rows if o["value_period"] == p) for p in PERIODS}
    return page(request, rows, total_results=len(rows), count_by_value_period=counts, **totals)


def _opportunity(request: web.Request) -> JSONObject:
    return one(_state(request).opportunities, request, "opportunity_id", "Opportunity")


async def get_opportunity(request: web.Request) -> web.Response:
    return web.json_response(_opportunity(request))


async def put_opportunity(request: web.Request) -> web.Response:
    opportunity, state = _opportunity(request), _state(request)
    body, errors = await read_body(request), Errors()
    _check_numbers({**opportunity, **body}, errors)
    found = None
    if "status_id" in body:
        found = status_of(state.options, str(body["status_id"]))
        if found is None:
            errors.add("status_id", DOES_NOT_EXIST)
    if "user_id" in body and find_user(state.options, str(body["user_id"])) is None:
        errors.add("user_id", DOES_NOT_EXIST)
    errors.raise_if_any()
    before = snapshot(opportunity)
    for key in ("value", "value_period", "confidence", "note", "user_id"):
        if key in body:
            opportunity[key] = body[key]
    if found is not None:
        _set_status(opportunity, *found)
    _values(opportunity, state.options.value_currency)
    opportunity["date_updated"] = now_iso()
    state.events.record("opportunity", "updated", opportunity, previous=before)
    return web.json_response(opportunity)


def add_deal_routes(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.get(f"{API}/pipeline/", list_pipelines),
            web.get(f"{API}/status/opportunity/", list_opportunity_statuses),
            web.post(f"{API}/opportunity/", creates(create_opportunity)),
            web.get(f"{API}/opportunity/", list_opportunities),
            web.get(f"{API}/opportunity/{{opportunity_id}}/", get_opportunity),
            web.put(f"{API}/opportunity/{{opportunity_id}}/", put_opportunity),
        ]
    )
