"""The admin API under ``/v1/``: bearer tokens (several allowed, for rotation).

Routes (described, with every parameter and answer, by ``GET /openapi.json``; see
``openapi.py``):

- ``GET /v1/submissions``: newest first, filtered by state (repeatable), source and received
  time; summaries without personal data unless ``include=payload`` asks for it.
- ``GET /v1/submissions/{id}``: one record with its payload and history.
- ``POST /v1/submissions/{id}/replay``: queue a finished submission again.
- ``POST /v1/submissions/replay``: queue many again, by ids or by a filter.
- ``DELETE /v1/submissions/{id}``: erase its personal data, keeping a tombstone.
- ``GET /v1/links``: identity links (one person's email and phone led to two leads), newest
  first, filtered by status (``flagged``: possible duplicates, ``merged``), paged with a
  ``before`` cursor; both leads with their pages in Close, no personal data.
- ``GET /v1/counts``: submissions per state, queue depth, delivery status, links per status.

Invalid parameters answer ``400 invalid-parameter`` naming the parameter; Redis out of reach
answers ``503 queue-unavailable``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from redis.exceptions import RedisError

from service.admin.context import ADMIN, AdminContext, context, matching_token, request_text
from service.admin.params import parse_links, parse_listing, parse_replay_request
from service.admin.sessions import attempts_wait, wrong_token
from service.admin.views import link_item, public, queue_overview, summary
from service.problems import ProblemError, rate_limited
from service.queue import Queue, Selection


def has_token(request: web.Request, tokens: tuple[str, ...]) -> bool:
    """Whether the request carries one of ``tokens`` as a bearer token."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return (
        scheme.lower() == "bearer"
        and bool(given.strip())
        and bool(matching_token(given.strip(), tokens))
    )


async def _authorized(request: web.Request) -> tuple[Queue, AdminContext]:
    """The queue, once the bearer token is right: 401 when not (counted against the client),
    429 while the client used up its wrong tokens (``sessions.py``)."""
    admin = context(request)
    with redis_errors():
        wait = await attempts_wait(request)
        if wait > 0:
            raise rate_limited(wait, "too many wrong admin tokens from your address")
        if not has_token(request, admin.tokens):
            if "Authorization" in request.headers:  # a guess; a bare request is none
                await wrong_token(request)
            raise ProblemError(
                401,
                "unauthorized",
                "a valid admin bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="lead-intake admin"'},
            )
    return admin.the_queue(), admin


@contextmanager
def redis_errors() -> Iterator[None]:
    """Redis out of reach becomes ``503 queue-unavailable``."""
    try:
        yield
    except (RedisError, OSError):
        raise ProblemError(503, "queue-unavailable", "Redis is unreachable") from None


def _not_found(sub_id: str) -> ProblemError:
    return ProblemError(404, "not-found", f"no submission {sub_id!r} (unknown or expired)")


async def list_submissions(request: web.Request) -> web.Response:
    queue, admin = await _authorized(request)
    selection, include = parse_listing(request.query)
    with redis_errors():
        records, more = await queue.index.page(selection)
    return web.json_response(
        {
            "submissions": [summary(r, admin.lead_url, include) for r in records],
            "limit": selection.limit,
            "more": more,
        }
    )


async def get_submission(request: web.Request) -> web.Response:
    queue, admin = await _authorized(request)
    sub_id = request.match_info["id"]
    with redis_errors():
        record = await queue.records.get(sub_id)
    if record is None:
        raise _not_found(sub_id)
    return web.json_response(public(record, admin.lead_url))


async def replay_submission(request: web.Request) -> web.Response:
    """Queue a finished submission again; the lookup runs again, so no second lead is made."""
    queue, _ = await _authorized(request)
    sub_id = request.match_info["id"]
    with redis_errors():
        outcome = await queue.records.replay(sub_id)
    if outcome == "unknown":
        raise _not_found(sub_id)
    if outcome == "erased":
        raise ProblemError(409, "conflict", "the submission was erased; there is nothing to replay")
    if outcome == "in-progress":
        raise ProblemError(
            409, "conflict", "the submission is not finished yet; replay it once it is"
        )
    return web.json_response({"id": sub_id, "status": "queued"}, status=202)


async def replay_many(request: web.Request) -> web.Response:
    queue, _ = await _authorized(request)
    text = await request_text(request, "the body")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        raise ProblemError(400, "malformed-body", "the body is not JSON") from None
    chosen = parse_replay_request(body)
    more = False
    with redis_errors():
        if isinstance(chosen, Selection):
            results, more = await queue.replay_selected(chosen)
        else:
            results = await queue.records.replay_all(chosen)
    replayed = sum(1 for _, outcome in results if outcome == "replayed")
    return web.json_response(
        {
            "results": [{"id": sub_id, "outcome": outcome} for sub_id, outcome in results],
            "replayed": replayed,
            "more": more,
        }
    )


async def erase_submission(request: web.Request) -> web.Response:
    """Remove the submission's personal data; the tombstone (id, source, times) stays."""
    queue, admin = await _authorized(request)
    sub_id = request.match_info["id"]
    with redis_errors():
        outcome = await queue.records.erase(sub_id)
        record = await queue.records.get(sub_id) if outcome != "unknown" else None
    if record is None:
        raise _not_found(sub_id)
    return web.json_response(public(record, admin.lead_url))


async def list_links(request: web.Request) -> web.Response:
    """Identity links, newest first. Paged with ``before`` (the ``at`` score, exclusive): an
    offset would shift as new links arrive at the top, a cursor on when each was first seen
    does not. ``next_before`` is the cursor of the next page (null on the last)."""
    queue, admin = await _authorized(request)
    status, limit, before = parse_links(request.query)
    with redis_errors():
        links, more = await queue.links.page(status, limit, before=before)
    return web.json_response(
        {
            "links": [link_item(link, admin.lead_url) for link in links],
            "limit": limit,
            "more": more,
            "next_before": float(links[-1]["at"]) if more else None,
        }
    )


async def counts(request: web.Request) -> web.Response:
    queue, _ = await _authorized(request)
    with redis_errors():
        return web.json_response(await queue_overview(queue))


def create_api_app(admin: AdminContext) -> web.Application:
    """The ``/v1`` sub-application."""
    app = web.Application()
    app[ADMIN] = admin
    app.router.add_get("/counts", counts)
    app.router.add_get("/links", list_links)
    app.router.add_get("/submissions", list_submissions)
    # Before /submissions/{id}: a static path wins over the pattern.
    app.router.add_post("/submissions/replay", replay_many)
    app.router.add_get("/submissions/{id}", get_submission)
    app.router.add_delete("/submissions/{id}", erase_submission)
    app.router.add_post("/submissions/{id}/replay", replay_submission)
    return app
