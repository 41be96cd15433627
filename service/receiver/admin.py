"""The admin API under ``/v1/``: bearer tokens (several allowed, for rotation).

Routes (described, with every parameter and answer, by ``GET /openapi.json``; see
``service/receiver/openapi.py``):

- ``GET /v1/submissions``: newest first, filtered by state (repeatable), source and received
  time; summaries without personal data unless ``include=payload`` asks for it.
- ``GET /v1/submissions/{id}``: one record with its payload and history.
- ``POST /v1/submissions/{id}/replay``: queue a finished submission again.
- ``POST /v1/submissions/replay``: queue many again, by ids or by a filter.
- ``DELETE /v1/submissions/{id}``: erase its personal data, keeping a tombstone.
- ``GET /v1/counts``: submissions per state, queue depth and delivery status.

Invalid parameters answer ``400 invalid-parameter`` naming the parameter (``invalid-params``,
as in RFC 9457's example); Redis out of reach answers ``503 queue-unavailable``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import MultiMapping
from redis.exceptions import RedisError

from service.close.pacing import GROUPS
from service.queue.records import FINAL_STATES, STATES, SubmissionRecord, iso
from service.queue.stream import WorkQueue
from service.receiver.problems import ProblemError
from service.receiver.state import QUEUE, SETTINGS

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_TIME = 1e11
"""Unix seconds beyond this (the year 5138) are taken for a mistake (milliseconds?)."""
MAX_TEXT = 200
INCLUDES = ("payload", "history")
REPLAYABLE = tuple(s for s in STATES if s in FINAL_STATES)
CLOSE_LEAD_URL = "https://app.close.com/lead/{}/"

_UNIX = re.compile(r"^\d{1,12}(\.\d{1,9})?$")
# ``+02:00`` written unencoded in a URL arrives as `` 02:00``: put the plus back.
_OFFSET_AS_SPACE = re.compile(r"(\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)$")


# -- authentication -----------------------------------------------------------------------------


def matching_token(given: str, tokens: Sequence[str]) -> str | None:
    """The configured token equal to ``given`` (every one compared, in constant time)."""
    found = None
    for token in tokens:
        if hmac.compare_digest(given.encode(), token.encode()):
            found = token
    return found


def check_token(request: web.Request, tokens: tuple[str, ...]) -> None:
    """Raise 401 unless the request carries one of ``tokens`` as a bearer token."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip() or not matching_token(given.strip(), tokens):
        raise ProblemError(
            401,
            "unauthorized",
            "a valid admin bearer token is required",
            headers={"WWW-Authenticate": 'Bearer realm="lead-intake admin"'},
        )


def _authorized(request: web.Request) -> WorkQueue:
    check_token(request, request.app[SETTINGS].admin_tokens)
    return request.app[QUEUE]


@contextmanager
def redis_errors() -> Iterator[None]:
    """Redis out of reach becomes ``503 queue-unavailable``."""
    try:
        yield
    except (RedisError, OSError):
        raise ProblemError(503, "queue-unavailable", "Redis is unreachable") from None


# -- parameters ---------------------------------------------------------------------------------


def invalid(name: str, reason: str) -> ProblemError:
    extra: dict[str, Any] = {"invalid-params": [{"name": name, "reason": reason}]}
    return ProblemError(400, "invalid-parameter", f"{name}: {reason}", **extra)


def parse_time(value: object, name: str) -> float:
    """An ISO-8601 time (UTC when it names no offset) or unix seconds → unix seconds."""
    reason = "not a time: give ISO-8601 (2024-05-01T12:00:00Z) or unix seconds"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid(name, reason)
    if isinstance(value, str):
        text = value.strip()
        if _UNIX.match(text):
            seconds = float(text)
        else:
            try:
                when = datetime.fromisoformat(_OFFSET_AS_SPACE.sub(r"\1+\2", text))
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                seconds = when.timestamp()
            except (ValueError, OverflowError, OSError):
                raise invalid(name, reason) from None
    else:
        try:
            seconds = float(value)
        except OverflowError:  # a JSON integer of hundreds of digits
            seconds = math.inf
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_TIME:
        raise invalid(name, "out of range: unix seconds (not milliseconds) from 1970 on")
    return seconds


def parse_limit(value: object, name: str = "limit", default: int = DEFAULT_LIMIT) -> int:
    if value is None:
        return default
    if isinstance(value, str) and re.fullmatch(r"\d{1,6}", value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise invalid(name, f"an integer from 1 to {MAX_LIMIT}")
    return value


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT:
        raise invalid(name, f"a string of 1 to {MAX_TEXT} characters")
    return value


def _choices(values: Sequence[str], name: str, allowed: Sequence[str]) -> tuple[str, ...]:
    """Repeated and/or comma-separated values, each one of ``allowed``."""
    chosen: list[str] = []
    for value in values:
        for raw in value.split(","):
            item = raw.strip()
            if item not in allowed:
                raise invalid(name, f"{item!r} is not one of {', '.join(allowed)}")
            if item not in chosen:
                chosen.append(item)
    return tuple(chosen)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which submissions a listing (or a replay by filter) is about."""

    states: tuple[str, ...] = ()
    source: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = DEFAULT_LIMIT

    def check(self) -> Selection:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise invalid("since", "later than until")
        return self

    async def fetch(self, queue: WorkQueue) -> tuple[list[SubmissionRecord], bool]:
        """The selected records, newest first, and whether more matched than ``limit``."""
        records = await queue.list_records(
            states=self.states,
            source=self.source,
            since=self.since,
            until=self.until,
            limit=self.limit + 1,
        )
        return records[: self.limit], len(records) > self.limit


def parse_listing(query: MultiMapping[str]) -> tuple[Selection, tuple[str, ...]]:
    """``GET /v1/submissions`` parameters → (selection, what to include)."""
    source = query.get("source")
    since, until = query.get("since"), query.get("until")
    selection = Selection(
        states=_choices(query.getall("state", []), "state", STATES),
        source=_text(source, "source") if source is not None else None,
        since=parse_time(since, "since") if since is not None else None,
        until=parse_time(until, "until") if until is not None else None,
        limit=parse_limit(query.get("limit")),
    )
    return selection.check(), _choices(query.getall("include", []), "include", INCLUDES)


_BY_IDS = frozenset({"ids"})
_BY_FILTER = frozenset({"state", "source", "since", "until", "limit"})


def parse_replay_request(body: object) -> tuple[str, ...] | Selection:
    """``{"ids": [...]}`` → the ids; ``{"state": ..., "source", "since", "until", "limit"}`` →
    a selection of finished submissions."""
    if not isinstance(body, dict):
        raise invalid("body", 'a JSON object: {"ids": [...]} or {"state": "dead", ...}')
    for key in body:
        if key not in _BY_IDS | _BY_FILTER:
            raise invalid(key, "unknown field")
    if ("ids" in body) == ("state" in body):
        raise invalid("body", 'give either "ids" or "state"')
    if "ids" in body:
        if _BY_FILTER & body.keys():
            raise invalid(next(iter(_BY_FILTER & body.keys())), 'not allowed with "ids"')
        ids = body["ids"]
        if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_LIMIT:
            raise invalid("ids", f"a list of 1 to {MAX_LIMIT} submission ids")
        return tuple(dict.fromkeys(_text(i, "ids") for i in ids))
    state = body["state"]
    if state not in REPLAYABLE:
        raise invalid("state", f"one of {', '.join(REPLAYABLE)}")
    return Selection(
        states=(state,),
        source=_text(body["source"], "source") if body.get("source") is not None else None,
        since=parse_time(body["since"], "since") if body.get("since") is not None else None,
        until=parse_time(body["until"], "until") if body.get("until") is not None else None,
        limit=parse_limit(body.get("limit"), default=MAX_LIMIT),
    ).check()


# -- records as the API shows them ------------------------------------------------------------


def lead_url(record: SubmissionRecord) -> str | None:
    """The lead in Close: the URL Close gave, else one made from the lead id."""
    given = record.extra.get("lead_url")
    if isinstance(given, str) and given.startswith(("https://", "http://")):
        return given
    return CLOSE_LEAD_URL.format(record.lead_id) if record.lead_id else None


def public(record: SubmissionRecord) -> dict[str, Any]:
    """The whole record (payload and history included), with the link to the Close lead."""
    return {**record.to_public(), "lead_url": lead_url(record)}


def _time_field(record: SubmissionRecord, name: str) -> str | None:
    try:
        return iso(float(record.extra[name])) if record.extra.get(name) else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def summary(record: SubmissionRecord, include: Sequence[str] = ()) -> dict[str, Any]:
    """A listing row: what happened, without personal data unless ``include`` asks for it."""
    out: dict[str, Any] = {
        "id": record.id,
        "source": record.source,
        "state": record.state,
        "received_at": iso(record.received_at),
        "updated_at": iso(record.updated_at),
        "attempts": record.attempts,
        "lead_id": record.lead_id,
        "lead_url": lead_url(record),
        "last_error": record.extra.get("last_error"),
        "next_attempt_at": _time_field(record, "next_attempt_at"),
        "replayed_at": _time_field(record, "replayed_at"),
    }
    if record.state == "erased":
        out["erased_from"] = record.extra.get("erased_from")
    if "payload" in include:
        out["payload"] = record.payload()
    if "history" in include:
        out["history"] = list(record.history)
    return out


def error_reason(record: SubmissionRecord) -> str | None:
    """One line saying why the last attempt failed (or why the submission was rejected)."""
    error = record.extra.get("last_error")
    if error is None and record.state == "rejected" and record.history:
        error = record.history[-1].get("detail")
    if isinstance(error, Mapping):
        parts = [str(error.get(k)) for k in ("reason", "error") if error.get(k)]
        if error.get("status"):
            parts.insert(0, f"HTTP {error['status']}")
        if error.get("field_errors"):
            parts.append("; ".join(str(f) for f in error["field_errors"]))
        return ": ".join(parts) or json.dumps(error, default=str)
    return str(error) if error else None


# -- queue depth and delivery status ------------------------------------------------------------


async def queue_overview(queue: WorkQueue) -> dict[str, Any]:
    """Submissions per state, queue depth and whether delivery to Close is paused."""
    counts, depth = await asyncio.gather(queue.counts(), queue.depth(GROUPS))
    rate_limited = depth.rate_limit_pauses
    status = (
        "paused"
        if depth.auth_pause
        else "rate-limited"
        if any(rate_limited.values())
        else "running"
    )
    return {
        "states": counts,
        "total": sum(n for state, n in counts.items() if state != "erased"),
        "queue": {
            "stream_length": depth.stream_length,
            "pending": depth.pending,
            "retry_scheduled": depth.retry_scheduled,
            "dead_letters": depth.dead_letters,
        },
        "delivery": {
            "status": status,
            "paused_reason": depth.auth_pause,
            "rate_limit_pauses": rate_limited,
        },
    }


# -- handlers -----------------------------------------------------------------------------------


def _not_found(sub_id: str) -> ProblemError:
    return ProblemError(404, "not-found", f"no submission {sub_id!r} (unknown or expired)")


async def list_submissions(request: web.Request) -> web.Response:
    queue = _authorized(request)
    selection, include = parse_listing(request.query)
    with redis_errors():
        records, more = await selection.fetch(queue)
    return web.json_response(
        {
            "submissions": [summary(r, include) for r in records],
            "limit": selection.limit,
            "more": more,
        }
    )


async def get_submission(request: web.Request) -> web.Response:
    queue = _authorized(request)
    sub_id = request.match_info["id"]
    with redis_errors():
        record = await queue.record(sub_id)
    if record is None:
        raise _not_found(sub_id)
    return web.json_response(public(record))


async def replay_submission(request: web.Request) -> web.Response:
    """Queue a finished submission again; the lookup runs again, so no second lead is made."""
    queue = _authorized(request)
    sub_id = request.match_info["id"]
    with redis_errors():
        outcome = await queue.replay(sub_id)
    if outcome == "unknown":
        raise _not_found(sub_id)
    if outcome == "erased":
        raise ProblemError(409, "conflict", "the submission was erased; there is nothing to replay")
    if outcome == "in-progress":
        raise ProblemError(
            409, "conflict", "the submission is not finished yet; replay it once it is"
        )
    return web.json_response({"id": sub_id, "status": "queued"}, status=202)


async def replay_ids(queue: WorkQueue, ids: Sequence[str]) -> list[dict[str, str]]:
    """Replay each id: ``[{"id", "outcome"}]`` (replayed, in-progress, erased, unknown)."""
    results = []
    with redis_errors():
        for sub_id in ids:
            results.append({"id": sub_id, "outcome": await queue.replay(sub_id)})
    return results


async def replay_many(request: web.Request) -> web.Response:
    queue = _authorized(request)
    try:
        body = json.loads(await request.read())
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        raise ProblemError(400, "malformed-body", "the body is not JSON") from None
    chosen = parse_replay_request(body)
    more = False
    if isinstance(chosen, Selection):
        with redis_errors():
            records, more = await chosen.fetch(queue)
        chosen = tuple(r.id for r in records)
    results = await replay_ids(queue, chosen)
    replayed = sum(1 for r in results if r["outcome"] == "replayed")
    return web.json_response({"results": results, "replayed": replayed, "more": more})


async def erase_submission(request: web.Request) -> web.Response:
    """Remove the submission's personal data; the tombstone (id, source, times) stays."""
    queue = _authorized(request)
    sub_id = request.match_info["id"]
    with redis_errors():
        outcome = await queue.erase(sub_id)
        record = await queue.record(sub_id) if outcome != "unknown" else None
    if record is None:
        raise _not_found(sub_id)
    return web.json_response(public(record))


async def counts(request: web.Request) -> web.Response:
    queue = _authorized(request)
    with redis_errors():
        return web.json_response(await queue_overview(queue))


def add_routes(app: web.Application) -> None:
    """The admin API, its OpenAPI document and the dashboard."""
    # Imported here, not at the top: both modules build on this one.
    from service.receiver import dashboard, openapi  # noqa: PLC0415

    app.router.add_get("/openapi.json", openapi.serve_document)
    app.router.add_get("/v1/counts", counts)
    app.router.add_get("/v1/submissions", list_submissions)
    # Before /v1/submissions/{id}: a static path wins over the pattern.
    app.router.add_post("/v1/submissions/replay", replay_many)
    app.router.add_get("/v1/submissions/{id}", get_submission)
    app.router.add_delete("/v1/submissions/{id}", erase_submission)
    app.router.add_post("/v1/submissions/{id}/replay", replay_submission)
    dashboard.add_routes(app)
