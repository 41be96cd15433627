"""The emulator's event log: ``GET /event/`` and ``GET /event/{id}/`` (close-api-actions.md §8).

Every create, update and delete the emulator applies records an event (``EventLog.record``);
all the events of one HTTP request share its ``request_id`` (the API middleware opens a
:func:`request_scope`). Events are recorded when the handler applies the change, so a fault
answered after applying (the 5xx of an unknown outcome) leaves them in the log.

What the doc states is fixed here: the supported filter combinations (others: 400), the
``date_updated`` bounds, ``_limit`` up to 50 (the default), ``_cursor``/``cursor_next`` (the
cursor keeps the date bounds), newest first, 30 days of retention, and ``data`` only for events
younger than an hour for a key that is not an admin's. What it leaves UNKNOWN is an option
(``EmulatorOptions``): how long an event takes to become visible (``event_lag_seconds``, with
``event_lag_jitter_seconds`` for events that show up out of order), whether a lead's
``created`` event carries its contacts (``event_lead_contacts``; by default ``contact_ids``, as
the doc's "the contact_ids list of the lead changes" suggests), the ``object_type`` names of
each kind of object (``event_object_types``), and whether the key may read the log at all
(``event_log_access``). Events are never consolidated.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
import json
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from close_emulator.fields import JSONObject
from close_emulator.ids import derived_id
from close_emulator.options import EmulatorOptions

API = "/api/v1"
MAX_LIMIT = 50
RETENTION_SECONDS = 30 * 24 * 3600.0
DATA_HOURS_FOR_USERS = 1.0
"""A key that is not an admin's sees ``data``/``previous_data`` of events this young only."""

FILTERS = ("object_type", "object_id", "action", "lead_id", "user_id", "request_id")
SUPPORTED: frozenset[frozenset[str]] = frozenset(
    frozenset(combo)
    for combo in (
        (),  # the plain listing (not in the doc's list; assumed, as every poller uses it)
        ("object_type", "object_id"),
        ("object_type", "action"),
        ("object_id", "action"),
        ("lead_id", "object_type"),
        ("lead_id", "object_type", "action"),
        ("lead_id", "user_id"),
        ("lead_id", "user_id", "object_type"),
        ("lead_id", "user_id", "object_type", "action"),
        ("user_id", "object_id"),
        ("user_id", "object_id", "action"),
        ("user_id", "object_type"),
        ("user_id", "object_type", "action"),
        ("lead_id",),
        ("user_id",),
        ("request_id",),
    )
)
"""The filter combinations Close supports, each optionally with ``date_updated`` bounds."""

BOUNDS = ("date_updated__gt", "date_updated__gte", "date_updated__lt", "date_updated__lte")
_NOT_DIFFED = frozenset({"date_updated", "updated_by", "updated_by_name", "updated_by_id"})


@dataclass(frozen=True, slots=True)
class Cause:
    """The HTTP request whose changes are being recorded."""

    request_id: str
    api_key_id: str | None
    method: str
    path: str


_CAUSE: ContextVar[Cause | None] = ContextVar("emulator_event_cause", default=None)


@contextmanager
def request_scope(request_id: str, api_key: str | None, method: str, path: str) -> Iterator[None]:
    """Every event recorded inside belongs to this request (its id, key, method and path)."""
    key_id = derived_id("api_", api_key) if api_key else None
    token = _CAUSE.set(Cause(request_id, key_id, method, path))
    try:
        yield
    finally:
        _CAUSE.reset(token)


def snapshot(obj: JSONObject) -> JSONObject:
    """A copy of ``obj`` as it is now (take it before changing an object, for ``previous``)."""
    return copy.deepcopy(obj)


def _parse_time(text: str) -> float:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="microseconds")


@dataclass(slots=True)
class Logged:
    seq: int
    at: float
    """Wall clock of ``date_updated`` (epoch seconds)."""
    visible_at: float
    """Monotonic time from which ``GET /event/`` shows it (the event-log lag)."""
    event: JSONObject


class EventRefused(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class EventLog:
    """The events of one emulator, oldest first (the listing reads them newest first)."""

    def __init__(self, options: Callable[[], EmulatorOptions]) -> None:
        self.options_of = options
        self.logged: list[Logged] = []
        self._ats: list[float] = []
        self._by_id: dict[str, Logged] = {}
        self._seq = 0
        self._rng = random.Random()  # noqa: S311 - ids and jitter, no secrets
        self.reseed(None)

    def reseed(self, seed: int | None) -> None:
        self._rng = random.Random(None if seed is None else f"{seed}:events")  # noqa: S311

    def clear(self) -> None:
        self.logged.clear()
        self._ats.clear()
        self._by_id.clear()

    def _id(self, prefix: str) -> str:
        chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        return prefix + "".join(self._rng.choice(chars) for _ in range(43))

    def new_request_id(self) -> str:
        return self._id("req_")

    # -- recording ------------------------------------------------------------------------------

    def record(
        self,
        kind: str,
        action: str,
        obj: JSONObject | None,
        *,
        object_id: str | None = None,
        lead_id: str | None = None,
        previous: JSONObject | None = None,
        meta: JSONObject | None = None,
    ) -> JSONObject | None:
        """Log that ``action`` (created, updated, deleted, merged...) happened to ``obj``, an
        object of ``kind`` (lead, contact, note, task, opportunity, custom_activity,
        subscription: ``event_object_types`` names it for Close). ``obj`` is the state after
        (None on delete: then give ``object_id``); ``previous`` the state before an update
        (``changed_fields`` and ``previous_data`` come from comparing them; an update that
        changed nothing is not logged). ``lead_id`` defaults to the object's own lead.
        ``meta`` is added to the request's method and path. Returns the event."""
        options = self.options_of()
        data = None if obj is None else self._data(kind, obj, options)
        changed: list[str] = []
        previous_data: JSONObject | None = None
        if previous is not None:
            before = self._data(kind, previous, options)
            after = data or {}
            changed = sorted(
                key
                for key in set(before) | set(after)
                if key not in _NOT_DIFFED and before.get(key) != after.get(key)
            )
            if action == "updated" and not changed:
                return None
            previous_data = {key: before.get(key) for key in changed}
        elif action == "created" and data is not None:
            changed = sorted(key for key in data if key not in _NOT_DIFFED)
        oid = object_id or (str(obj["id"]) if obj is not None else "")
        if lead_id is None:
            source = obj if obj is not None else previous or {}
            lead_id = oid if kind == "lead" else source.get("lead_id")
        cause = _CAUSE.get()
        now = time.time()
        delay = options.event_lag_seconds + self._rng.uniform(0, options.event_lag_jitter_seconds)
        stamp = _iso(now)
        now = _parse_time(stamp)  # bounds given as the shown stamp compare equal to it
        event: JSONObject = {
            "id": self._id("ev_"),
            "date_created": stamp,
            "date_updated": stamp,
            "organization_id": options.organization_id,
            "user_id": options.user_id,
            "request_id": cause.request_id if cause else None,
            "api_key_id": cause.api_key_id if cause else None,
            "object_type": options.event_object_types.get(kind, kind),
            "object_id": oid,
            "lead_id": lead_id,
            "action": action,
            "changed_fields": changed,
            "data": data,
            "previous_data": previous_data,
            "meta": {
                **({"request_method": cause.method, "request_path": cause.path} if cause else {}),
                **(meta or {}),
            },
        }
        self._seq += 1
        logged = Logged(self._seq, now, time.monotonic() + delay, event)
        self.logged.append(logged)
        self._ats.append(now)
        self._by_id[event["id"]] = logged
        self._expire(now)
        return event

    @staticmethod
    def _data(kind: str, obj: JSONObject, options: EmulatorOptions) -> JSONObject:
        data = snapshot(obj)
        if kind == "lead" and not options.event_lead_contacts:
            data["contact_ids"] = [c["id"] for c in data.pop("contacts", None) or []]
        return data

    def _expire(self, now: float) -> None:
        cut = bisect.bisect_left(self._ats, now - RETENTION_SECONDS)
        if cut:
            for gone in self.logged[:cut]:
                self._by_id.pop(str(gone.event["id"]), None)
            del self.logged[:cut]
            del self._ats[:cut]

    # -- reading --------------------------------------------------------------------------------

    def _shown(self, logged: Logged, options: EmulatorOptions, now: float) -> JSONObject:
        event = dict(logged.event)
        young = now - logged.at < DATA_HOURS_FOR_USERS * 3600
        if options.event_key_role != "admin" and not young:
            event["data"] = event["previous_data"] = None
        return event

    def get(self, event_id: str) -> JSONObject | None:
        options, now = self.options_of(), time.time()
        logged = self._by_id.get(event_id)
        if logged is None or logged.visible_at > time.monotonic():
            return None
        if now - logged.at > RETENTION_SECONDS:
            return None
        return self._shown(logged, options, now)

    def listing(self, query: dict[str, str]) -> JSONObject:
        """One page of ``GET /event/`` for ``query`` (raises ``EventRefused``)."""
        options = self.options_of()
        allowed = {*FILTERS, *BOUNDS, "_limit", "_cursor", "_fields"}
        unknown = sorted(set(query) - allowed)
        if unknown:
            raise EventRefused(f"Unknown filter: {', '.join(unknown)}.")
        filters = {name: query[name] for name in FILTERS if name in query}
        if frozenset(filters) not in SUPPORTED:
            names = ", ".join(sorted(filters))
            raise EventRefused(f"Unsupported combination of filters: {names}.")
        limit = _limit(query.get("_limit"))
        before_seq: int | None = None
        if query.get("_cursor"):
            before_seq, bounds = _read_cursor(query["_cursor"])
        else:
            bounds = {name: query[name] for name in BOUNDS if name in query}
        low, high = _bounds(bounds)
        now, moment = time.time(), time.monotonic()
        floor = max(low[0], now - RETENTION_SECONDS)
        start = bisect.bisect_left(self._ats, floor)
        page: list[Logged] = []
        more = False
        for logged in reversed(self.logged[start:]):
            if before_seq is not None and logged.seq >= before_seq:
                continue
            if logged.visible_at > moment or logged.at < floor:
                continue
            if not _within(logged.at, low, high):
                continue
            if any(logged.event.get(name) != value for name, value in filters.items()):
                continue
            if len(page) == limit:
                more = True
                break
            page.append(logged)
        cursor = _cursor(page[-1].seq, bounds) if more and page else None
        return {
            "data": [self._shown(logged, options, now) for logged in page],
            "cursor_next": cursor,
            "cursor_previous": None,
        }


def _limit(raw: str | None) -> int:
    if raw is None:
        return MAX_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise EventRefused("_limit must be an integer.") from None
    if not 1 <= value <= MAX_LIMIT:
        raise EventRefused(f"_limit must be between 1 and {MAX_LIMIT}.")
    return value


def _bounds(bounds: dict[str, str]) -> tuple[tuple[float, bool], tuple[float, bool]]:
    """``((low, inclusive), (high, inclusive))`` of the ``date_updated`` bounds."""
    low, high = (float("-inf"), True), (float("inf"), True)
    for name, text in bounds.items():
        try:
            moment = _parse_time(text)
        except ValueError:
            raise EventRefused(f"{name} is not a date.") from None
        if name.endswith("__gt") or name.endswith("__gte"):
            low = max(low, (moment, name.endswith("__gte")), key=lambda b: (b[0], not b[1]))
        else:
            high = min(high, (moment, name.endswith("__lte")), key=lambda b: (b[0], b[1]))
    return low, high


def _within(at: float, low: tuple[float, bool], high: tuple[float, bool]) -> bool:
    above = at >= low[0] if low[1] else at > low[0]
    below = at <= high[0] if high[1] else at < high[0]
    return above and below


def _cursor(seq: int, bounds: dict[str, str]) -> str:
    raw = json.dumps({"before": seq, "bounds": bounds}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _read_cursor(text: str) -> tuple[int, dict[str, str]]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = json.loads(raw)
        return int(value["before"]), {str(k): str(v) for k, v in value["bounds"].items()}
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError):
        raise EventRefused("Invalid cursor.") from None


# -- routes ---------------------------------------------------------------------------------------

EVENT_LOG = web.AppKey("emulator_event_log", EventLog)


def _forbidden(options: EmulatorOptions) -> web.Response | None:
    if options.event_log_access == "allow":
        return None
    # Close's answer to a key without access to the event log is UNKNOWN; 403 here.
    return web.json_response({"error": "You don't have access to the event log."}, status=403)


async def list_events(request: web.Request) -> web.Response:
    log = request.app[EVENT_LOG]
    refused = _forbidden(log.options_of())
    if refused is not None:
        return refused
    try:
        page: Any = log.listing(dict(request.query))
    except EventRefused as error:
        return web.json_response({"error": str(error)}, status=error.status)
    return web.json_response(page)


async def get_event(request: web.Request) -> web.Response:
    log = request.app[EVENT_LOG]
    refused = _forbidden(log.options_of())
    if refused is not None:
        return refused
    event = log.get(request.match_info["event_id"])
    if event is None:
        return web.json_response(
            {"error": "Empty query: Event matching query does not exist."}, status=404
        )
    return web.json_response(event)


def add_event_routes(app: web.Application, log: EventLog) -> None:
    app[EVENT_LOG] = log
    app.router.add_routes(
        [web.get(f"{API}/event/", list_events), web.get(f"{API}/event/{{event_id}}/", get_event)]
    )
