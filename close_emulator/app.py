"""A built-in emulator of the Close API, for tests, ``make run`` and chaos/benchmark runs.

It follows ``close-api.md``: Basic (``<key>:``) or Bearer auth with Close's 401 body; leads,
contacts and notes with Close's ids, E.164 phones and 400/404 bodies; lead statuses and the
custom field schema; ``/data/search/`` with an optional index lag; the event log
(``/event/``, ``events``); per-endpoint-group rate
limits with ``RateLimit`` headers and 429s; and fault knobs (latency, 5xx before or after
applying a write, hangs, scripted faults) so callers can rehearse failure.

Layout: options and CLI flags (``options``), state (``state``), field rules
(``fields``), objects (``objects``), search (``search``), limits
(``limits``), API routes (``api``, ``users``), control routes and pages (``control``), the
organisation file (``org``).

Request pipeline for ``/api/`` paths: latency → auth (401) → rate limit (429) → fault before
applying (scripted first, then dice) → handler → fault after applying → headers and log.

The ``/_emulator/`` control routes and the ``GET /`` page have NO authentication: the emulator
is meant for local use only; never expose it on a shared network.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from close_emulator.activities import add_activity_routes
from close_emulator.api import (
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    REQUEST_RECORD,
    ObjectNotFound,
    add_api_routes,
)
from close_emulator.control import add_control_routes
from close_emulator.deals import add_deal_routes
from close_emulator.events import add_event_routes, request_scope
from close_emulator.fields import ValidationFailed
from close_emulator.limits import endpoint_group, limit_body, limit_headers
from close_emulator.merge import add_merge_routes
from close_emulator.options import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    EmulatorOptions,
    Fault,
)
from close_emulator.sales import add_sales_routes
from close_emulator.sequences import add_sequence_routes
from close_emulator.state import EMULATOR_STATE, EmulatorState, RequestRecord
from close_emulator.tasks import add_task_routes
from close_emulator.users import add_user_routes

logger = logging.getLogger(__name__)

UNAUTHORIZED = (
    "The server could not verify that you are authorized to access the URL requested. You "
    "either supplied the wrong credentials (e.g. a bad password), or your browser doesn't "
    "understand how to supply the credentials required."
)


def api_key_from(header: str | None) -> str | None:
    """The key in ``Authorization: Basic base64(<key>:)`` or ``Authorization: Bearer <key>``."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None  # the password is ignored (Close's is empty)


def authenticate(header: str | None, keys: list[str]) -> str | None:
    """The accepted key, or None. No configured keys means any non-empty key is accepted."""
    key = api_key_from(header)
    if key is None or not keys:
        return key
    given = key.encode()
    return key if any(hmac.compare_digest(given, known.encode()) for known in keys) else None


def _json_or_empty(body: object, status: int) -> web.Response:
    if body is None:
        return web.Response(status=status)
    if isinstance(body, str):
        return web.Response(text=body, status=status)
    return web.json_response(body, status=status)


async def _fault_response(fault: Fault, state: EmulatorState) -> web.Response:
    if fault.delay_ms:
        await asyncio.sleep(fault.delay_ms / 1000)
    if fault.hang:
        seconds = fault.hang_seconds
        await state.hang(state.options.hang_seconds if seconds is None else seconds)
    response = _json_or_empty(fault.body, fault.answer_status)
    response.headers.update(fault.headers)
    return response


async def _handle(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ValidationFailed as failure:
        return web.json_response(failure.body, status=400)
    except ObjectNotFound as missing:
        return web.json_response(missing.body, status=404)
    except web.HTTPNotFound:
        return web.json_response({"error": NOT_FOUND}, status=404)
    except web.HTTPMethodNotAllowed:
        return web.json_response({"error": METHOD_NOT_ALLOWED}, status=405)
    except web.HTTPUnsupportedMediaType as refused:
        return web.Response(
            text=refused.text, status=refused.status, content_type="application/json"
        )


async def _apply(
    request: web.Request, handler: Handler, state: EmulatorState, record: RequestRecord
) -> web.StreamResponse:
    """Run the handler, unless a fault answers before it; a fault may also replace its answer."""
    planned = state.next_fault(request.method, request.path)
    if planned is None:
        response = await _handle(request, handler)
        record.applied = 200 <= response.status < 300
        return response
    record.fault = planned.kind
    logger.debug("emulator fault %s on %s %s", planned.kind, request.method, request.path)
    if planned.fault.after_apply:
        handled = await _handle(request, handler)
        record.applied = 200 <= handled.status < 300
    return await _fault_response(planned.fault, state)


async def _serve(
    request: web.Request, handler: Handler, state: EmulatorState, record: RequestRecord
) -> web.StreamResponse:
    delay = state.latency_seconds()
    if delay > 0:
        await asyncio.sleep(delay)
    options = state.options
    key = authenticate(request.headers.get("Authorization"), options.api_keys)
    if key is None:
        record.fault = "auth"
        return web.json_response({"error": UNAUTHORIZED}, status=401)
    limit = state.limiter.take(options, key, record.group, time.monotonic())
    headers = limit_headers(limit, options) if limit is not None else {}
    if limit is not None:
        record.rate_remaining, record.rate_reset = limit.remaining, limit.reset
    response: web.StreamResponse
    if limit is not None and not limit.allowed:
        record.fault = "rate_limited"
        response = _json_or_empty(limit_body(limit, options), 429)
    else:
        request_id = state.events.new_request_id()  # every event of this request carries it
        with request_scope(request_id, key, request.method, request.path):
            response = await _apply(request, handler, state, record)
    for name, value in headers.items():
        if name not in response.headers:
            response.headers[name] = value
    return response


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency, auth, rate limits, faults and the request log for ``/api/`` paths."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    state = request.app[EMULATOR_STATE]
    started = time.monotonic()
    group = endpoint_group(request.method, request.path)
    record = state.log_request(request.method, request.path, request.query_string, group)
    request[REQUEST_RECORD] = record
    try:
        response = await _serve(request, handler, state, record)
        record.status = response.status
        return response
    finally:
        record.duration_ms = round((time.monotonic() - started) * 1000, 3)


async def _wake_hangs(app: web.Application) -> None:
    app[EMULATOR_STATE].wake_hangs()


def create_emulator_app(options: EmulatorOptions | None = None) -> web.Application:
    """The emulator as an aiohttp application; its state is ``app[EMULATOR_STATE]``."""
    app = web.Application(middlewares=[api_middleware])
    app[EMULATOR_STATE] = EmulatorState(options if options is not None else EmulatorOptions())
    add_merge_routes(app)
    add_api_routes(app)
    add_user_routes(app)
    add_sales_routes(app)
    add_task_routes(app)
    add_sequence_routes(app)
    add_deal_routes(app)
    add_activity_routes(app)
    add_event_routes(app, app[EMULATOR_STATE].events)
    add_control_routes(app)
    app.on_shutdown.append(_wake_hangs)
    return app


async def run_emulator(
    options: EmulatorOptions,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve the emulator on ``host:port`` until ``stop`` is set or the task is cancelled."""
    runner = web.AppRunner(create_emulator_app(options), shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        for address in runner.addresses:
            logger.info(
                "Close emulator listening on http://%s:%s/ (local use only: no auth on "
                "/_emulator/)",
                address[0],
                address[1],
            )
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
