"""The Close emulator the benchmarks drain into: the service's own, with an indexed search.

``python -m bench.emulator --port N [--latency-ms X --rate-limit N --rate-window W ...]`` takes
the flags of ``lead-intake emulator`` and serves the same application
(``create_emulator_app``: latency, auth, rate limits with ``RateLimit`` headers and 429s,
faults, the same objects and answers), with two differences that only change its speed:

- ``POST /data/search/`` for the one query shape the worker sends (leads having a contact with
  this exact email, or this E.164 phone) looks the value up in a dict instead of scanning
  every lead. The emulator's own search is a linear scan (about 9 us per stored lead per
  search on the bench machine), which makes a drain of N leads cost O(N^2) emulator CPU: at a
  few thousand leads the emulator, not the worker, would be what a benchmark measures. Any
  other query, and any run with a search lag, still goes through the emulator's scan.
- no access log line per request.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from close_emulator import (
    EMULATOR_STATE,
    add_emulator_arguments,
    create_emulator_app,
    options_from_args,
)
from close_emulator.fields import JSONObject, normalize_phone
from close_emulator.search import run_search

SEARCH_PATH = "/api/v1/data/search/"
_RELATED = {"contact_email": ("email", "email"), "contact_phone": ("phone", "phone")}


def _node(value: Any, kind: str) -> dict[str, Any] | None:
    if isinstance(value, dict) and value.get("type") == kind and not value.get("negate"):
        return value
    return None


def exact_contact_lookup(query: Any) -> tuple[str, str] | None:
    """``("email", value)`` / ``("phone", value)`` when ``query`` is "leads with a contact whose
    email (phone) is exactly X" (service/close/search.py's shape), else None."""
    root = _node(query, "and")
    parts = root.get("queries") if root else None
    if not isinstance(parts, list) or len(parts) != 2:
        return None
    lead_type, related = _node(parts[0], "object_type"), _node(parts[1], "has_related")
    if not lead_type or lead_type.get("object_type") != "lead" or not related:
        return None
    if (related.get("this_object_type"), related.get("related_object_type")) != (
        "lead",
        "contact",
    ):
        return None
    inner = _node(related.get("related_query"), "has_related")
    if not inner or inner.get("this_object_type") != "contact":
        return None
    kind_field = _RELATED.get(str(inner.get("related_object_type")))
    condition_node = _node(inner.get("related_query"), "field_condition")
    if kind_field is None or condition_node is None:
        return None
    field, condition = condition_node.get("field"), condition_node.get("condition")
    if not isinstance(field, dict) or not isinstance(condition, dict):
        return None
    if field.get("type") != "regular_field" or field.get("field_name") != kind_field[1]:
        return None
    if condition.get("type") != "text" or condition.get("mode") != "exact_value":
        return None
    value = condition.get("value")
    return (kind_field[0], value) if isinstance(value, str) else None


def index_search(app: web.Application) -> None:
    """Serve the worker's contact lookups from a dict kept beside the emulator's objects."""
    state = app[EMULATOR_STATE]
    by_value: dict[tuple[str, str], set[str]] = {}
    store_lead, reset = state.store_lead, state.reset

    def indexed_store_lead(lead: JSONObject) -> None:
        store_lead(lead)
        for contact in lead.get("contacts") or []:
            for item in contact.get("emails") or []:
                key = ("email", str(item.get("email", "")).casefold())
                by_value.setdefault(key, set()).add(lead["id"])
            for item in contact.get("phones") or []:
                by_value.setdefault(("phone", str(item.get("phone", ""))), set()).add(lead["id"])

    def indexed_reset(*, restore_options: bool = False) -> None:
        reset(restore_options=restore_options)
        by_value.clear()

    state.store_lead = indexed_store_lead  # type: ignore[method-assign]
    state.reset = indexed_reset  # type: ignore[method-assign]

    @web.middleware
    async def narrowed_search(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Runs inside the emulator's own middleware: latency, auth and limits already applied.
        if request.method != "POST" or request.path != SEARCH_PATH:
            return await handler(request)
        if state.options.search_lag_seconds > 0:
            return await handler(request)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return await handler(request)
        wanted = exact_contact_lookup(body.get("query")) if isinstance(body, dict) else None
        if wanted is None:
            return await handler(request)
        kind, value = wanted
        if kind == "email":
            value = value.casefold()
        else:
            value = (normalize_phone(value, state.options.default_region) or (value,))[0]
        ids = sorted(by_value.get((kind, value), ()))
        leads = [state.leads[i] for i in ids if i in state.leads]
        return web.json_response(run_search(body, iter(leads), state.options, state.live_object))

    app.middlewares.append(narrowed_search)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_emulator_arguments(parser)
    args = parser.parse_args()
    app = create_emulator_app(options_from_args(args))
    index_search(app)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
