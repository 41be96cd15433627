"""The admin API's parameters: listing filters and replay requests, checked and turned into
:class:`~service.queue.Selection` values. Every refusal is ``400 invalid-parameter`` naming the
parameter (``invalid-params``, as in RFC 9457's example). The OpenAPI document reads its limits
from the constants here."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from multidict import MultiMapping

from service.problems import ProblemError
from service.queue import Selection
from service.queue.links import STATUSES as LINK_STATUSES
from service.queue.records import REPLAYABLE, STATES, State, as_state
from service.times import MAX_TIME, BadTime, parse_time

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
DEFAULT_LINKS = 100
MAX_TEXT = 200
INCLUDES = ("payload", "history")

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_LINKS",
    "INCLUDES",
    "LINK_STATUSES",
    "MAX_LIMIT",
    "MAX_TEXT",
    "MAX_TIME",
    "REPLAYABLE",
    "invalid",
    "parse_links",
    "parse_listing",
    "parse_replay_request",
]


def invalid(name: str, reason: str) -> ProblemError:
    extra: dict[str, Any] = {"invalid-params": [{"name": name, "reason": reason}]}
    return ProblemError(400, "invalid-parameter", f"{name}: {reason}", **extra)


def time_param(value: object, name: str) -> float:
    try:
        return parse_time(value)
    except BadTime as exc:
        raise invalid(name, str(exc)) from None


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


def _checked(selection: Selection) -> Selection:
    if (
        selection.since is not None
        and selection.until is not None
        and selection.since > selection.until
    ):
        raise invalid("since", "later than until")
    return selection


def parse_listing(query: MultiMapping[str]) -> tuple[Selection, tuple[str, ...]]:
    """``GET /v1/submissions`` parameters → (selection, what to include)."""
    source = query.get("source")
    since, until = query.get("since"), query.get("until")
    states: tuple[State, ...] = tuple(
        as_state(s) for s in _choices(query.getall("state", []), "state", STATES)
    )
    selection = Selection(
        states=states,
        source=_text(source, "source") if source is not None else None,
        since=time_param(since, "since") if since is not None else None,
        until=time_param(until, "until") if until is not None else None,
        limit=parse_limit(query.get("limit")),
    )
    return _checked(selection), _choices(query.getall("include", []), "include", INCLUDES)


def parse_links(query: MultiMapping[str]) -> tuple[str | None, int, float | None]:
    """``GET /v1/links`` parameters → (status or None for all, limit, before or None)."""
    statuses = query.getall("status", [])
    if len(statuses) > 1:
        raise invalid("status", "give it once")
    status = statuses[0].strip() if statuses else None
    if status is not None and status not in LINK_STATUSES:
        raise invalid("status", f"{status!r} is not one of {', '.join(LINK_STATUSES)}")
    before = query.get("before")
    return (
        status,
        parse_limit(query.get("limit"), default=DEFAULT_LINKS),
        time_param(before, "before") if before is not None else None,
    )


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
    selection = Selection(
        states=(as_state(state),),
        source=_text(body["source"], "source") if body.get("source") is not None else None,
        since=time_param(body["since"], "since") if body.get("since") is not None else None,
        until=time_param(body["until"], "until") if body.get("until") is not None else None,
        limit=parse_limit(body.get("limit"), default=MAX_LIMIT),
    )
    return _checked(selection)
