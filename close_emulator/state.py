"""Everything the Close emulator remembers: objects, request log, fault queue, dice, buckets.

One ``EmulatorState`` per application, reachable as ``app[EMULATOR_STATE]``. Tests read and
change it directly; other processes use the ``/_emulator/`` endpoints.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from aiohttp import web

from close_emulator.events import EventLog
from close_emulator.fields import JSONObject, normalize_phone
from close_emulator.limits import RateLimiter
from close_emulator.options import EmulatorOptions, Fault
from close_emulator.search_index import SearchIndex

_ID_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def now_iso() -> str:
    """Close's timestamp format: ISO-8601, microseconds, ``+00:00``."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _rng(seed: int | None, purpose: str) -> random.Random:
    return random.Random(None if seed is None else f"{seed}:{purpose}")  # noqa: S311


@dataclass(slots=True)
class RequestRecord:
    """One /api/ request as the emulator saw and answered it."""

    index: int
    monotonic: float
    wall: str
    method: str
    path: str
    query: str
    group: str
    status: int = 0
    applied: bool = False
    """The handler ran and answered 2xx (for a write: the change happened)."""
    fault: str | None = None
    """Why the answer was not the handler's: auth, rate_limited, scripted, error, hang."""
    object_id: str | None = None
    duration_ms: float = 0.0
    rate_remaining: int | None = None
    """The rate limit's ``remaining`` this answer carried (None without a limit)."""
    rate_reset: float | None = None
    """Seconds until the group's bucket is full again, as of this answer."""

    def to_json(self) -> JSONObject:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PlannedFault:
    fault: Fault
    kind: str


class EmulatorState:
    """Objects, log and fault machinery of one emulator. ``options`` may be replaced or edited."""

    def __init__(self, options: EmulatorOptions) -> None:
        self._initial_options = options.model_copy(deep=True)
        self.options = options
        self.leads: dict[str, JSONObject] = {}
        self.contacts: dict[str, JSONObject] = {}
        self.notes: dict[str, JSONObject] = {}
        # The follow-ups (sales.py, deals.py): by id, in creation order.
        self.tasks: dict[str, JSONObject] = {}
        self.subscriptions: dict[str, JSONObject] = {}
        self.opportunities: dict[str, JSONObject] = {}
        self.custom_activities: dict[str, JSONObject] = {}
        self.merges: dict[str, JSONObject] = {}
        """Lead merges done (``merge.py``), by the merged-away lead: its ``lead_id`` (the source),
        ``destination`` and ``date``; for tests, which follow a merged lead to the kept one."""
        self.unsubscribed: set[str] = set()
        """Unsubscribed email addresses, lower-case (``/unsubscribe/email/``)."""
        self._notes_by_lead: dict[str, list[JSONObject]] = {}
        self.requests: list[RequestRecord] = []
        self.faults: list[Fault] = []
        self.index = SearchIndex()
        self.limiter = RateLimiter()
        self.events = EventLog(lambda: self.options)
        """The event log (``GET /event/``): ``events.record(kind, action, obj, ...)``."""
        self._log_offset = 0
        self._wake = asyncio.Event()
        self._seed_used: int | None = None
        self._reseed()

    # Randomness ---------------------------------------------------------------------------
    def _reseed(self) -> None:
        # Reproducible dice for faults and test ids, not for secrets.
        seed = self.options.seed
        self._seed_used = seed
        self._fault_rng = _rng(seed, "faults")
        self._id_rng = _rng(seed, "ids")
        self._latency_rng = _rng(seed, "latency")
        self.events.reseed(seed)

    def _check_seed(self) -> None:
        if self.options.seed != self._seed_used:
            self._reseed()

    def new_id(self, prefix: str) -> str:
        self._check_seed()
        return prefix + "".join(self._id_rng.choice(_ID_CHARS) for _ in range(43))

    def latency_seconds(self) -> float:
        self._check_seed()
        jitter = self._latency_rng.uniform(0, self.options.latency_jitter_ms)
        return (self.options.latency_ms + jitter) / 1000

    # Faults -------------------------------------------------------------------------------
    def add_fault(self, fault: Fault | None = None, /, **fields: Any) -> Fault:
        """Queue a scripted fault (a ``Fault`` or its fields); matching requests consume it."""
        queued = fault if fault is not None else Fault(**fields)
        self.faults.append(queued)
        return queued

    def next_fault(self, method: str, path: str) -> PlannedFault | None:
        """The scripted fault for this request if one matches, else the dice's verdict."""
        for position, fault in enumerate(self.faults):
            method_ok = fault.method in (None, "*") or fault.method.upper() == method
            if method_ok and (fault.path is None or fnmatchcase(path, fault.path)):
                fault.count -= 1
                if fault.count <= 0:
                    del self.faults[position]
                return PlannedFault(fault, "scripted")
        self._check_seed()
        options, dice = self.options, self._fault_rng
        hang, error, after = dice.random(), dice.random(), dice.random()
        if hang < options.hang_rate:
            return PlannedFault(Fault(hang=True), "hang")
        if error < options.error_rate:
            return PlannedFault(Fault(status=dice.choice(options.error_statuses)), "error")
        if after < options.error_after_apply_rate:
            status = dice.choice(options.error_statuses)
            return PlannedFault(Fault(status=status, after_apply=True), "error_after_apply")
        return None

    async def hang(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the emulator is reset or shut down meanwhile."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            return

    def wake_hangs(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    # Request log --------------------------------------------------------------------------
    def log_request(self, method: str, path: str, query: str, group: str) -> RequestRecord:
        record = RequestRecord(
            index=self._log_offset + len(self.requests),
            monotonic=time.monotonic(),
            wall=now_iso(),
            method=method,
            path=path,
            query=query,
            group=group,
        )
        self.requests.append(record)
        overflow = len(self.requests) - self.options.request_log_limit
        if overflow > 0:
            del self.requests[:overflow]
            self._log_offset += overflow
        return record

    def requests_since(self, index: int) -> list[RequestRecord]:
        return self.requests[max(0, index - self._log_offset) :]

    @property
    def next_request_index(self) -> int:
        return self._log_offset + len(self.requests)

    # Objects ------------------------------------------------------------------------------
    def store_lead(self, lead: JSONObject) -> None:
        """Keep ``lead`` (and its contacts) and schedule it for the search index."""
        self.leads[lead["id"]] = lead
        for contact in lead["contacts"]:
            self.contacts[contact["id"]] = contact
        now = time.monotonic()
        self.index.publish(lead, now + self.options.search_lag_seconds, now)

    def store_note(self, note: JSONObject) -> None:
        self.notes[note["id"]] = note
        self._notes_by_lead.setdefault(str(note["lead_id"]), []).append(note)

    def delete_lead(self, lead_id: str) -> None:
        """Remove a lead and its contacts (GET answers 404, no search shows it)."""
        lead = self.leads.pop(lead_id, None)
        for contact in (lead or {}).get("contacts") or []:
            self.contacts.pop(contact["id"], None)
        self.index.remove(lead_id)

    def move_notes(self, source: str, destination: str) -> None:
        """The notes of lead ``source`` now belong to ``destination`` (a merge)."""
        moved = self._notes_by_lead.pop(source, [])
        for note in moved:
            note["lead_id"] = destination
        self._notes_by_lead.setdefault(destination, []).extend(moved)

    def live_object(self, object_type: str, object_id: str) -> JSONObject | None:
        table = {"lead": self.leads, "contact": self.contacts}.get(object_type, {})
        return table.get(object_id)

    def leads_with_email(self, email: str) -> list[JSONObject]:
        """Leads having a contact with this email (case-insensitive), index lag ignored."""
        wanted = email.casefold()
        return [
            lead
            for lead in self._live(self.index.with_email(email))
            if any(
                str(item.get("email", "")).casefold() == wanted
                for contact in lead["contacts"]
                for item in contact["emails"]
            )
        ]

    def leads_with_phone(self, phone: str) -> list[JSONObject]:
        """Leads having a contact with this phone (compared in E.164), index lag ignored."""
        region = self.options.default_region
        wanted = (normalize_phone(phone, region) or (phone,))[0]
        return [
            lead
            for lead in self._live(self.index.with_phone(phone, region))
            if any(
                item.get("phone") == wanted
                for contact in lead["contacts"]
                for item in contact["phones"]
            )
        ]

    def _live(self, ids: set[str]) -> list[JSONObject]:
        """The leads of ``ids`` as they are now, in creation order. (The index keeps the
        values of every version not yet superseded, the live one included.)"""
        return [self.leads[i] for i in self.index.in_order(ids) if i in self.leads]

    def notes_for(self, lead_id: str) -> list[JSONObject]:
        return list(self._notes_by_lead.get(lead_id, ()))

    # Control ------------------------------------------------------------------------------
    def configure(self, **changes: Any) -> EmulatorOptions:
        """Apply a validated patch of options (raises ``pydantic.ValidationError``)."""
        self.options = self.options.patched(changes)
        return self.options

    def reset(self, *, restore_options: bool = False) -> None:
        """Forget objects, log, faults and buckets; wake hangs; reseed the dice."""
        if restore_options:
            self.options = self._initial_options.model_copy(deep=True)
        self.leads.clear()
        self.contacts.clear()
        self.notes.clear()
        for table in (
            self.tasks,
            self.subscriptions,
            self.opportunities,
            self.custom_activities,
            self.merges,
        ):
            table.clear()
        self.unsubscribed.clear()
        self._notes_by_lead.clear()
        self.requests.clear()
        self._log_offset = 0
        self.faults.clear()
        self.index.clear()
        self.events.clear()
        self.limiter.clear()
        self.wake_hangs()
        self._reseed()


EMULATOR_STATE = web.AppKey("emulator_state", EmulatorState)
