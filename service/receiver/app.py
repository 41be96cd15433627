"""The receiver: ``POST /hooks/{source}`` into the work stream, plus health and admin routes.

A 2xx is answered only after Redis has stored the submission; when Redis cannot be reached the
answer is 503 and nothing is half-written (the record and the stream entry are one script).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.envelope import Envelope, new_submission_id
from service.keys import Keys
from service.queue.connection import redis_from_url
from service.queue.stream import WorkQueue
from service.receiver import admin
from service.receiver.bodies import BodyError, media_type_of, parse_body, supported
from service.receiver.delivery import delivery_key
from service.receiver.problems import ProblemError, problem, problem_middleware
from service.receiver.state import MAPPERS, QUEUE, REDIS, SETTINGS, SOURCES
from service.settings import Settings
from service.sources import Sources, build_mappers

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


async def read_limited(request: web.Request, limit: int) -> bytes:
    """Read the body, refusing (413) anything over ``limit`` bytes without reading it all."""
    if request.content_length is not None and request.content_length > limit:
        raise ProblemError(413, "too-large", f"the body may be at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ProblemError(413, "too-large", f"the body may be at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def receive(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    name = request.match_info["source"]
    source = request.app[SOURCES].get(name)
    if source is None:
        raise ProblemError(404, "unknown-source", f"there is no source named {name!r}")
    media_type, _ = media_type_of(request.headers.get("Content-Type"))
    if not supported(media_type):
        raise ProblemError(
            415,
            "unsupported-media-type",
            f"content type {media_type or '(none)'!r} is not accepted; send application/json, "
            "application/x-www-form-urlencoded or multipart/form-data",
        )
    raw = await read_limited(request, source.max_body_bytes or settings.max_body_bytes)
    try:
        parsed = parse_body(request.headers.get("Content-Type"), raw)
    except BodyError as exc:
        raise ProblemError(exc.status, exc.slug, exc.detail) from None
    now = time.time()
    envelope = Envelope(
        id=new_submission_id(now),
        source=name,
        received_at=now,
        content_type=parsed.media_type,
        body=parsed.body,
        headers={h: request.headers[h] for h in KEPT_HEADERS if h in request.headers},
        query=dict(request.query),
        client_ip=request.remote,
    )
    delivery = delivery_key(source, request.app[MAPPERS].get(name), request.headers, envelope)
    try:
        sub_id, queued = await request.app[QUEUE].enqueue(envelope, delivery)
    except (RedisError, OSError) as exc:
        logger.error("cannot queue a submission for %s: %s", name, type(exc).__name__)
        raise ProblemError(
            503,
            "queue-unavailable",
            "the submission was not stored; send it again later",
        ) from None
    if not queued:
        return web.json_response({"id": sub_id, "duplicate": True}, status=200)
    return web.json_response({"id": sub_id, "status": "queued"}, status=202)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    queue = request.app[QUEUE]
    try:
        await queue.redis.ping()
        group = await queue.group_exists()
    except (RedisError, OSError) as exc:
        return problem(503, "not-ready", f"Redis unreachable: {type(exc).__name__}")
    if not group:
        return problem(
            503, "not-ready", "the consumer group does not exist yet (no worker started)"
        )
    return web.json_response({"status": "ready"})


def _redis_ctx(redis: Redis | None) -> object:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        own = redis is None
        if redis is None:
            if not settings.redis_url:
                raise RuntimeError("INTAKE_REDIS_URL is not set")
            client = redis_from_url(settings.redis_url)
        else:
            client = redis
        app[REDIS] = client
        app[QUEUE] = WorkQueue(
            client, Keys(settings.key_prefix), record_ttl=settings.record_ttl_seconds
        )
        try:
            await app[QUEUE].ensure_group()
        except (RedisError, OSError) as exc:
            logger.warning(
                "Redis not reachable at start (%s); answering 503 until it is", type(exc).__name__
            )
        yield
        if own:
            await client.aclose()

    return ctx


def create_app(
    settings: Settings, sources: Sources, *, redis: Redis | None = None
) -> web.Application:
    """The receiver application. Pass ``redis`` to share a client (tests, `lead-intake dev`)."""
    app = web.Application(middlewares=[problem_middleware], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[SOURCES] = sources
    app[MAPPERS] = build_mappers(sources, None)  # event ids at the door; no Close schema needed
    app.cleanup_ctx.append(_redis_ctx(redis))  # type: ignore[arg-type]
    app.router.add_post("/hooks/{source}", receive)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    admin.add_routes(app)
    return app
