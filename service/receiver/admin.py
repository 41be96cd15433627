"""The admin API under ``/v1/``: bearer tokens (several allowed, for rotation)."""

from __future__ import annotations

import hmac

from aiohttp import web
from redis.exceptions import RedisError

from service.receiver.problems import ProblemError
from service.receiver.state import QUEUE, SETTINGS


def check_token(request: web.Request, tokens: tuple[str, ...]) -> None:
    """Raise 401 unless the request carries one of ``tokens`` as a bearer token."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    ok = False
    if scheme.lower() == "bearer" and given:
        for token in tokens:
            ok |= hmac.compare_digest(given.strip().encode(), token.encode())
    if not ok:
        raise ProblemError(401, "unauthorized", "a valid admin bearer token is required")


async def get_submission(request: web.Request) -> web.Response:
    check_token(request, request.app[SETTINGS].admin_tokens)
    sub_id = request.match_info["id"]
    try:
        record = await request.app[QUEUE].record(sub_id)
    except (RedisError, OSError):
        raise ProblemError(503, "queue-unavailable", "Redis is unreachable") from None
    if record is None:
        raise ProblemError(404, "not-found", f"no submission {sub_id!r} (unknown or expired)")
    return web.json_response(record.to_public())


async def replay_submission(request: web.Request) -> web.Response:
    """Queue a finished submission again; the lookup runs again, so no second lead is made."""
    check_token(request, request.app[SETTINGS].admin_tokens)
    sub_id = request.match_info["id"]
    try:
        outcome = await request.app[QUEUE].replay(sub_id)
    except (RedisError, OSError):
        raise ProblemError(503, "queue-unavailable", "Redis is unreachable") from None
    if outcome == "unknown":
        raise ProblemError(404, "not-found", f"no submission {sub_id!r} (unknown or expired)")
    if outcome == "erased":
        raise ProblemError(409, "conflict", "the submission was erased; there is nothing to replay")
    if outcome == "in-progress":
        raise ProblemError(
            409, "conflict", "the submission is not finished yet; replay it once it is"
        )
    return web.json_response({"id": sub_id, "status": "queued"}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/submissions/{id}", get_submission)
    app.router.add_post("/v1/submissions/{id}/replay", replay_submission)
