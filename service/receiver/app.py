"""The receiver: ``POST /hooks/{source}`` into the work stream, plus health and admin routes.

A 2xx is answered only after Redis has stored the submission; when Redis cannot be reached the
answer is 503 and nothing is half-written (the record and the stream entry are one script).

What a submission passes at the door, in order (each step answers with its own problem type):
rate limits (429; their tokens are taken by the script that stores the submission, or on their
own when the request is refused earlier), content type (415), the body read in bounded size and
time (413, 408), the sender's signature or token on the raw bytes (401), parsing within
depth/key/field limits (400, 413, 415 for refused files), the honeypot (answered like a success,
stored as spam), for forms the mapping's required fields (422), the CAPTCHA (403, 503), then
delivery dedup and the enqueue (503). CORS headers go on every answer of a source with CORS
settings; a browser posting a form is redirected (303) to the source's pages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from service import __version__, admin, tracing
from service.admin.context import AdminContext
from service.admin.people import PersonFinder
from service.close.pacing import delivery_state
from service.close.status import refresh_metrics
from service.config.settings import Settings
from service.config.sources import SourceConfig, Sources, build_mappers
from service.envelope import Envelope, new_submission_id
from service.errors import OverLimit
from service.httpbody import BodyError
from service.logs import SUBMISSION, ServerLog
from service.mapping import Mapper
from service.metrics import CONTENT_TYPE, Metrics
from service.problems import ProblemError, http_problem, problem, problem_middleware
from service.providers import ProviderPauses, refresh_hydration_metrics
from service.queue import Queue
from service.queue.connection import RedisClient, durability_warnings, redis_from_url
from service.receiver import answers, cors, spam
from service.receiver.bodies import (
    media_type_of,
    parse_body,
    supported,
    unsupported_media_type,
)
from service.receiver.captcha import CAPTCHA, captcha_ctx
from service.receiver.delivery import delivery_key
from service.receiver.door import (
    DOORS,
    PARSE_LIMITS,
    TRUSTED_PROXIES,
    VERIFIERS,
    Door,
    authenticate,
    authenticate_body,
    build_doors,
    build_parse_limits,
    build_verifiers,
    read_body,
    request_client,
)
from service.receiver.handshake import handshake
from service.receiver.items import accept_items, unmappable
from service.receiver.state import (
    ADMIN_PLANE,
    DRAINING,
    MAPPERS,
    METRICS,
    QUEUE,
    REDIS,
    SETTINGS,
    SOURCES,
)
from service.receiver.watch import WATCH, watch, watching
from service.times import iso

logger = logging.getLogger(__name__)

# Request headers worth keeping with a submission (never credentials or signatures).
KEPT_HEADERS = (
    "user-agent",
    "referer",
    "origin",
    "accept-language",
    "content-type",
    "idempotency-key",
    "webhook-id",
)


async def receive(request: web.Request) -> web.Response:
    name = request.match_info["source"]
    door = request.app[DOORS].get(name)
    if door is None:
        raise ProblemError(404, "unknown-source", f"there is no source named {name!r}")
    client = request_client(request)
    tokens = spam.Tokens(request.app[QUEUE].intake, door.throttles_of(client))
    try:
        response = await _admit(request, door, client, tokens)
    except ProblemError as exc:
        response = await _refused(request, door.source, tokens, exc)
    cors.decorate(request, response, door.source.cors)
    return response


async def _refused(
    request: web.Request, source: SourceConfig, tokens: spam.Tokens, exc: ProblemError
) -> web.Response:
    """The answer to a refused request, which takes its tokens too (429 when over a limit)."""
    try:
        await tokens.take(exc)
    except ProblemError as over:
        exc = over
    response = answers.refused(request, source.redirect, exc)
    if answers.closes(exc):
        response.force_close()
    return response


async def _admit(
    request: web.Request, door: Door, client: str | None, tokens: spam.Tokens
) -> web.Response:
    app = request.app
    settings, queue = app[SETTINGS], app[QUEUE]
    name, source, verifier = door.name, door.source, door.verifier
    content_type = request.headers.get("Content-Type")
    media_type, _ = media_type_of(content_type)
    if not supported(media_type):
        raise _refused_body(unsupported_media_type(media_type))
    limit = source.max_body_bytes or settings.max_body_bytes
    raw = await read_body(request, limit, settings.read_timeout_seconds)
    event_id = authenticate(request, name, verifier, raw) if verifier else None
    try:
        parsed = parse_body(content_type, raw, door.limits)
    except BodyError as exc:
        raise _refused_body(exc) from None
    body = parsed.body
    if verifier is not None:
        body, body_event_id = authenticate_body(request, name, verifier, body)
        event_id = event_id or body_event_id
    now = time.time()
    sub_id = new_submission_id(now)
    SUBMISSION.set((sub_id, name))  # this request's task: every log line names the submission
    requested_page, token, clean = door.controls(body)
    headers = request.headers
    envelope = Envelope(
        id=sub_id,
        source=name,
        received_at=now,
        content_type=parsed.media_type,
        body=clean,
        headers={h: headers[h] for h in KEPT_HEADERS if h in headers},
        query=_query(request, door.private_query) if request.query_string else {},
        client_ip=client,
        trace=tracing.carried(),
    )
    if spam.honeypot_filled(body, source.honeypot):
        return await _spam(
            request, dataclasses.replace(envelope, body=body), source, requested_page, tokens
        )
    mapper = door.mapper
    if mapper is not None and door.checks_mapping:
        _check_mappable(mapper, envelope)
    if source.captcha is not None:
        await tokens.take()  # a flood stops here, before it costs a call to the CAPTCHA service
        await app[CAPTCHA].check(source.captcha, name, token, client)
    if mapper is not None and mapper.splits:  # one delivery, several submissions
        await tokens.take()  # the delivery's tokens, once for all its items
        return await accept_items(
            request,
            sources=app[SOURCES],
            source=source,
            mapper=mapper,
            envelope=envelope,
            event_id=event_id,
        )
    delivery = delivery_key(source, mapper, request.headers, envelope, event_id=event_id)
    try:
        sub_id, queued = await queue.intake.enqueue(envelope, delivery, tokens.hand_over())
    except OverLimit as exc:
        raise spam.limited(exc) from None
    except (RedisError, OSError) as exc:
        logger.error("cannot queue a submission for %s: %s", name, type(exc).__name__)
        raise answers.queue_down() from None
    tracing.name_submission(sub_id, duplicate=not queued)
    return answers.accepted(
        request, source.redirect, sub_id, duplicate=not queued, requested=requested_page
    )


def _refused_body(error: BodyError) -> ProblemError:
    return ProblemError(error.status, error.slug, error.detail)


def _query(request: web.Request, private: frozenset[str]) -> dict[str, str]:
    """The request's query to keep, without its credentials."""
    return {k: v for k, v in request.query.items() if k not in private}


def _check_mappable(mapper: Mapper, envelope: Envelope) -> None:
    """A payload that can never become a lead is refused now, while the sender can fix it."""
    refused = unmappable(mapper, envelope)
    if refused is not None:
        raise refused


async def _spam(
    request: web.Request,
    envelope: Envelope,
    source: SourceConfig,
    requested_page: Any,
    tokens: spam.Tokens,
) -> web.Response:
    """A filled honeypot: stored as rejected spam, answered exactly like a success."""
    intake = request.app[QUEUE].intake
    try:
        sub_id, _ = await intake.store_rejected(envelope, "spam", throttles=tokens.hand_over())
    except OverLimit as exc:
        raise spam.limited(exc) from None
    except (RedisError, OSError):
        raise answers.queue_down() from None
    logger.info("submission %s rejected as spam (source %s)", sub_id, envelope.source)
    return answers.accepted(
        request, source.redirect, sub_id, duplicate=False, requested=requested_page
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


@web.middleware
async def door_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as problem+json on every route; hook requests also counted by source and
    status, and timed. (One middleware, which for a hook request also makes the problem+json
    answers: aiohttp wraps the handler once per middleware, and each nested coroutine is a
    frame more on every request.)"""
    if not request.path.startswith("/hooks/"):
        return await problem_middleware(request, handler)
    name = request.match_info.get("source", "")
    label = name if request.app[SOURCES].get(name) is not None else "unknown"
    if tracing.enabled():
        with tracing.door(request.headers, request.method, label) as span:
            response = await _observed(request, handler, label)
            tracing.answered(span, response.status)
            return response
    return await _observed(request, handler, label)


async def _observed(request: web.Request, handler: Handler, label: str) -> web.StreamResponse:
    """The handler's answer (problem+json for an error), counted and timed."""
    observe, started = request.app[METRICS].observe_http, time.monotonic()
    try:
        response = await handler(request)
    except ProblemError as exc:
        response = exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            observe(label, exc.status, time.monotonic() - started)
            raise
        response = http_problem(exc)
    except BaseException:
        observe(label, 500, time.monotonic() - started)
        raise
    observe(label, response.status, time.monotonic() - started)
    return response


async def metrics_page(request: web.Request) -> web.Response:
    metrics, queue = request.app[METRICS], request.app[QUEUE]
    await refresh_metrics(metrics, queue)
    hydrating = request.app[SOURCES].hydrating()
    await refresh_hydration_metrics(metrics, queue.redis, queue.keys, hydrating)
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def readyz(request: web.Request) -> web.Response:
    if request.app[DRAINING].is_set():
        return problem(503, "not-ready", "shutting down: finishing the requests in flight")
    queue, watcher = request.app[QUEUE], request.app[WATCH]
    try:
        await watcher.check(queue)  # the group and the data marker: a loss is found here too
        paused = (await delivery_state(queue.redis, queue.keys)).auth_pause
        hydrating = request.app[SOURCES].hydrating()
        fetch_paused = await ProviderPauses(queue.redis, queue.keys).paused(hydrating)
        warnings = await durability_warnings(queue.redis)
        loss = await queue.marker.last_loss()
    except (RedisError, OSError) as exc:
        return problem(503, "not-ready", f"Redis unreachable: {type(exc).__name__}")
    lost: dict[str, Any] = {"data_lost_at": iso(loss.at)} if loss else {}
    if watcher.refusal:
        return problem(503, "not-ready", watcher.refusal, warnings=warnings, **lost)
    # Still ready while delivery to Close is paused: submissions are accepted and kept.
    delivery = f"paused: {paused}" if paused else "running"
    body: dict[str, Any] = {"status": "ready", "delivery": delivery, **lost}
    if fetch_paused:  # a provider refuses a source's token: that source's submissions wait
        body["hydration"] = {name: f"paused: {why}" for name, why in fetch_paused.items()}
    if warnings:
        body["warnings"] = warnings
    return web.json_response(body)


def _acknowledge_after_replicas(queue: Queue, settings: Settings) -> None:
    if isinstance(queue.redis, RedisCluster):
        # WAIT counts one connection's writes; a cluster client has none of its own.
        raise RuntimeError("INTAKE_ACK_REPLICAS needs one server or Sentinel, not a Cluster")
    queue.intake.acknowledge_after(settings.ack_replicas, settings.ack_replica_timeout_seconds)


def _redis_ctx(redis: RedisClient | None) -> object:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        own = redis is None
        if redis is None:
            if not settings.redis_url:
                raise RuntimeError("INTAKE_REDIS_URL is not set")
            client = redis_from_url(settings.redis_url, settings.redis_options)
        else:
            client = redis
        app[REDIS] = client
        app[QUEUE] = queue = Queue.from_settings(client, settings)
        if settings.ack_replicas:
            _acknowledge_after_replicas(queue, settings)
        app[ADMIN_PLANE].attach(queue)
        app[WATCH] = watcher = watch(queue, settings, app[METRICS])
        async with watching(watcher, queue):  # the group and marker made at start, and kept
            yield
        app[ADMIN_PLANE].attach(None)
        if own:
            await client.aclose()

    return ctx


def create_app(
    settings: Settings,
    sources: Sources,
    *,
    redis: RedisClient | None = None,
    metrics: Metrics | None = None,
) -> web.Application:
    """The receiver application. Pass ``redis`` to share a client (tests, `lead-intake dev`)."""
    app = web.Application(
        middlewares=[door_middleware],
        client_max_size=settings.max_body_bytes,
        handler_args={
            # A connection gets this long to send its request line and headers (after it opens
            # or after the previous answer); the body has its own bound (read_timeout_seconds).
            "keepalive_timeout": settings.header_timeout_seconds,
            # Bodies are decoded by service/httpbody.py, bounded, with a 400 when broken.
            "auto_decompress": False,
            # A malformed request is one WARNING line (rate-limited), not an ERROR traceback.
            "logger": ServerLog(),
        },
    )
    app[SETTINGS] = settings
    app[SOURCES] = sources
    # Event ids at the door and the dashboard's search: no Close schema needed.
    app[MAPPERS] = mappers = build_mappers(sources, None)
    app[VERIFIERS] = verifiers = build_verifiers(sources)
    app[PARSE_LIMITS] = limits = build_parse_limits(sources)
    app[DOORS] = build_doors(sources, mappers, verifiers, limits)
    app[METRICS] = metrics or Metrics()
    app[DRAINING] = asyncio.Event()
    app[TRUSTED_PROXIES] = settings.trusted_networks
    app.cleanup_ctx.append(_redis_ctx(redis))  # type: ignore[arg-type]
    needs_captcha = any(source.captcha for _, source in sources.items())
    app.cleanup_ctx.append(captcha_ctx(settings, needs_captcha))
    app.router.add_post("/hooks/{source}", receive)
    app.router.add_get("/hooks/{source}", handshake)  # Meta's subscription check
    app.router.add_route("OPTIONS", "/hooks/{source}", cors.preflight)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    admin_context = AdminContext.from_settings(settings, PersonFinder(mappers))
    app[ADMIN_PLANE] = admin.mount(app, admin_context)
    return app
