"""Processing one submission: map it, find or create the person's lead, record the outcome.

Every path ends in exactly one recorded outcome for the attempt: a terminal state (the entry
acknowledged and deleted in the same script), or ``retrying`` with a due time in the retry
schedule. An exception escaping ``handle`` leaves the entry pending, so another worker reclaims
it after the visibility timeout: nothing is lost.

Effectively-once leads, although Close has no idempotency key:

- one person's submissions are processed one at a time (identity locks, all workers);
- before creating, the person is looked up: the local cache, then Close's search by email,
  then by phone; the cache is written right after a create, so search-index lag cannot hide a
  lead this service made;
- the record is marked before the create POST; a later attempt that finds the mark but no lead
  id (a crash, a timeout, a 5xx: outcome unknown) looks the person up again, and while nothing
  is found it waits out a grace period for Close's search index before creating;
- progress (lead id, contact added, note posted) is written as it happens, so a retry resumes
  where the last attempt stopped instead of repeating a create.

Redis round trips of a new person's submission: one to read the record and mark it
``processing``, one to take the person's locks (reading the lead cache and create marks with
them), one to record "creating lead" with the marks, one to record "lead created" with the lead
cache, and one to record the outcome, acknowledge the entry and release the locks. Close's rate
limit tokens are taken several at a time (``service/close/pacing.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.close.client import CloseClient
from service.envelope import Envelope
from service.errors import (
    CloseAuthFailed,
    CloseError,
    CloseRateLimited,
    CloseRefused,
    CloseUnavailable,
    MappingRejected,
    TransientError,
    field_errors,
)
from service.mapping import MappedLead, Mapper
from service.metrics import Metrics
from service.queue.records import SubmissionRecord
from service.queue.stream import Entry, PersonUpdate, WorkQueue
from service.sources import DedupSpec, Sources
from service.worker.backoff import retry_delay
from service.worker.gate import DeliveryGate
from service.worker.identity import Held, IdentityLocks, LeadCache, identity_keys

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: float
    cap: float
    max_attempts: int
    deadline: float = 72 * 3600.0
    """Seconds after receipt (or replay) after which a failing submission ends ``dead``."""


class AwaitingIndex(TransientError):
    """An earlier create's outcome is unknown and Close's search may not show it yet."""

    def __init__(self, message: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class StaleCachedLead(TransientError):
    """The cached lead of this person no longer exists in Close (deleted or merged)."""


@dataclass(frozen=True, slots=True)
class Match:
    lead_id: str
    via: str
    candidates: tuple[str, ...] = field(default_factory=tuple)


_CHOOSERS = {
    "recently_updated": (lambda row: str(row.get("date_updated") or ""), True),
    "recently_created": (lambda row: str(row.get("date_created") or ""), True),
    "oldest": (lambda row: str(row.get("date_created") or ""), False),
}


def choose_lead(rows: Sequence[Mapping[str, Any]], how: str) -> str:
    key, newest_first = _CHOOSERS[how]
    ordered = sorted(rows, key=key, reverse=newest_first)
    return str(ordered[0]["id"])


def _close_error_detail(exc: CloseError) -> dict[str, Any]:
    detail: dict[str, Any] = {"error": str(exc)}
    if exc.response is not None:
        detail["status"] = exc.response.status
        lines = field_errors(exc.response.body)
        if lines:
            detail["field_errors"] = list(lines)
    return detail


def _about_missing_lead(exc: CloseRefused) -> bool:
    """Close refused because the lead we named does not exist (any more)."""
    if exc.response is None:
        return False
    if exc.response.status == 404:
        return True
    return any(line.startswith("lead") for line in field_errors(exc.response.body))


class Pipeline:
    """Everything one worker task does with one stream entry."""

    def __init__(
        self,
        queue: WorkQueue,
        close: CloseClient,
        mappers: Mapping[str, Mapper],
        sources: Sources,
        retry: RetryPolicy,
        *,
        locks: IdentityLocks,
        cache: LeadCache,
        gate: DeliveryGate | None = None,
        unknown_outcome_grace: float = 120.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.queue = queue
        self.close = close
        self.mappers = mappers
        self.sources = sources
        self.retry = retry
        self.locks = locks
        self.cache = cache
        self.gate = gate
        self.unknown_outcome_grace = unknown_outcome_grace
        self.metrics = metrics

    async def handle(self, entry: Entry) -> str:
        """Process one entry; returns the state it was left in."""
        # Read the record and mark it processing (the attempt counted) in one step; an expired,
        # erased or already finished one (acknowledging failed last time) is acknowledged.
        state, raw = await self.queue.claim(entry)
        if raw is None:
            return state or "gone"
        try:
            record = SubmissionRecord.from_hash(raw)
        except (ValueError, TypeError, KeyError) as exc:  # the stored record is damaged
            return await self.give_up(entry, f"the stored record could not be read ({exc})")
        return await self._process(entry, record)

    async def _process(self, entry: Entry, record: SubmissionRecord) -> str:
        try:
            envelope = Envelope.from_json(record.envelope or "")
        except (ValueError, KeyError, TypeError):
            return await self._end(entry, record, "rejected", {"reason": "corrupt envelope"})
        mapper = self.mappers.get(record.source)
        source = self.sources.get(record.source)
        if mapper is None or source is None:
            reason = f"source {record.source!r} is no longer configured"
            return await self._end(entry, record, "dead", {"reason": reason})
        try:
            mapped = mapper.map(envelope)
        except MappingRejected as exc:
            return await self._end(entry, record, "rejected", {"reason": exc.reason, **exc.detail})
        identities = identity_keys(mapped.identity)
        try:
            async with self.locks.hold(identities) as held:
                return await self._deliver(entry, record, mapped, held, source.dedup)
        except CloseRefused as exc:
            detail = _close_error_detail(exc)
            body = exc.response.body if exc.response else None
            fields = {"last_error": detail, "close_response": body}
            return await self._end(entry, record, "dead", detail, fields=fields)
        except CloseAuthFailed as exc:
            return await self._pause_for_auth(entry, record, exc)
        except TransientError as exc:
            return await self._schedule_retry(entry, record, exc)

    # -- the lead ---------------------------------------------------------------------------

    async def _deliver(
        self,
        entry: Entry,
        record: SubmissionRecord,
        mapped: MappedLead,
        held: Held,
        dedup: DedupSpec,
    ) -> str:
        identities = held.identities
        progress = record.extra
        lead_id = record.lead_id
        created = progress.get("lead_created") == "1"
        via = str(progress.get("matched_via") or "")
        if lead_id is None:
            match = None
            if dedup.on_match != "create":
                match = await self._find(held, mapped, dedup.choose)
            if match is not None:
                lead_id, via = match.lead_id, match.via
                # A lead found by search is cached in the same step that records the match.
                await self._progress(
                    record,
                    {"step": "matched", "lead_id": lead_id, "via": via},
                    person=self._person(held, cache_lead=lead_id if via != "cache" else ""),
                    lead_id=lead_id,
                    matched_via=via,
                    candidates=list(match.candidates),
                )
                if dedup.on_match == "skip":
                    skipped = {"lead_id": lead_id, "via": via, "candidates": list(match.candidates)}
                    return await self._end(
                        entry, record, "skipped", skipped, lead_id=lead_id, held=held
                    )
            else:
                lead_id = await self._create(record, mapped, held)
                created = True
        try:
            if not created and dedup.on_match == "contact" and not progress.get("contact_done"):
                await self._ensure_contact(record, lead_id, mapped)
            if mapped.note and not progress.get("note_id"):
                note = await self.close.create_note(lead_id, mapped.note)
                progress = {**progress, "note_id": note.get("id")}
        except CloseRefused as exc:
            if created or not _about_missing_lead(exc):
                raise
            # The lead we matched is gone (deleted or merged): look the person up afresh.
            await self.cache.forget(list(identities))
            await self._progress(
                record,
                {"step": "matched lead gone", "lead_id": lead_id},
                lead_id="",
                matched_via="",
            )
            raise StaleCachedLead(f"lead {lead_id} no longer exists in Close") from None
        state = "created" if created else "attached"
        detail: dict[str, Any] = {"lead_id": lead_id}
        if via:
            detail["via"] = via
        fields: dict[str, Any] = {"note_id": progress.get("note_id")}
        if mapped.warnings:
            fields["warnings"] = list(mapped.warnings)
        return await self._end(
            entry, record, state, detail, fields=fields, lead_id=lead_id, held=held
        )

    async def _find(self, held: Held, mapped: MappedLead, choose: str) -> Match | None:
        """The person's lead: the local cache (as read with the locks), then Close's search by
        email, then by phone. The caller caches a lead found by search."""
        if held.cached_lead:
            return Match(held.cached_lead, "cache", (held.cached_lead,))
        for kind, value in (("email", mapped.identity.email), ("phone", mapped.identity.phone)):
            if not value:
                continue
            rows = await self.close.find_leads(kind, value)
            if rows:
                lead_id = choose_lead(rows, choose)
                return Match(lead_id, f"search:{kind}", tuple(str(r["id"]) for r in rows))
        return None

    def _person(self, held: Held, **changes: Any) -> PersonUpdate:
        if changes.get("cache_lead"):
            changes["cache_ttl"] = self.cache.ttl
        return PersonUpdate(held.identities, **changes)

    async def _create(self, record: SubmissionRecord, mapped: MappedLead, held: Held) -> str:
        started = float(record.extra.get("create_started_at") or 0)
        if started:
            waited = time.time() - started
            if waited < self.unknown_outcome_grace:
                raise AwaitingIndex(
                    "an earlier create may have reached Close; waiting for its search index",
                    retry_after=self.unknown_outcome_grace - waited,
                )
        # Another submission of this person sent a create whose answer was lost: its lead may
        # exist although Close's search does not show it yet. Wait as that submission does.
        # (The marks were read with the locks; only a holder of the locks writes them.)
        identities = list(held.identities)
        other = held.creating_now()
        if other is not None and other[0] != record.id:
            raise AwaitingIndex(
                f"a create for this person by {other[0]} may have reached Close; waiting for "
                "its search index",
                retry_after=other[1],
            )
        # Marked before the POST, in one step: a crash or timeout from here on is detected on
        # redelivery, by this submission (its record) and by the person's others (the marks).
        await self._progress(
            record,
            {"step": "creating lead"},
            person=self._person(
                held,
                mark_creating=record.id if self.unknown_outcome_grace > 0 else "",
                mark_ttl=self.unknown_outcome_grace,
            ),
            create_started_at=repr(time.time()),
        )
        try:
            lead = await self.close.create_lead(mapped.lead)
        except (CloseUnavailable, CloseRateLimited) as exc:
            if isinstance(exc, CloseUnavailable) and exc.maybe_applied:
                raise
            # Nothing reached Close (429, or no connection): no unknown outcome to wait out.
            await self._progress(
                record,
                {"step": "create not sent"},
                person=self._person(held, clear_creating=True),
                create_started_at="",
            )
            raise
        except (CloseRefused, CloseAuthFailed):
            await self.cache.clear_creating(identities)  # refused: no lead was made
            raise
        lead_id = str(lead["id"])
        # The lead cached (the person's next submission finds it even while Close's search
        # lags), the marks cleared and the progress recorded, in one step.
        await self._progress(
            record,
            {"step": "lead created", "lead_id": lead_id},
            person=self._person(held, cache_lead=lead_id, clear_creating=True),
            lead_id=lead_id,
            lead_created="1",
            lead_url=lead.get("html_url"),
        )
        return lead_id

    async def _ensure_contact(
        self, record: SubmissionRecord, lead_id: str, mapped: MappedLead
    ) -> None:
        """Add the person to the matched lead unless a contact already has their email/phone."""
        added = False
        if mapped.contact:
            lead = await self.close.get_lead(lead_id)
            if not _has_person(lead, mapped):
                await self.close.create_contact(lead_id, mapped.contact)
                added = True
        await self._progress(
            record, {"step": "contact", "added": added}, contact_done="1", contact_added=str(added)
        )

    async def _progress(
        self,
        record: SubmissionRecord,
        detail: dict[str, Any],
        *,
        person: PersonUpdate | None = None,
        **fields: Any,
    ) -> None:
        await self.queue.transition(
            record.id,
            "processing",
            detail=detail,
            fields=fields,
            source=record.source,
            person=person,
        )

    # -- outcomes -----------------------------------------------------------------------------

    async def give_up(self, entry: Entry, reason: str) -> str:
        """Dead-letter an entry that cannot be processed at all (never retried again)."""
        await self.queue.transition(
            entry.sub_id,
            "dead",
            detail={"reason": reason},
            ack=entry,
            dead=True,
            source=entry.source,
            fields={"last_error": {"reason": reason}},
        )
        logger.error("submission %s dead: %s", entry.sub_id, reason)
        if self.metrics is not None:
            self.metrics.submissions.labels(entry.source, "dead").inc()
        return "dead"

    async def _pause_for_auth(
        self, entry: Entry, record: SubmissionRecord, exc: CloseAuthFailed
    ) -> str:
        if self.gate is not None:
            await self.gate.close_for_auth(exc)
        probe = self.gate.probe_seconds if self.gate else 30.0
        detail = {**_close_error_detail(exc), "reason": "Close refused the API key; paused"}
        await self.queue.transition(
            record.id,
            "retrying",
            detail=detail,
            ack=entry,
            retry_at=time.time() + probe,
            source=record.source,
            attempts_delta=-1,  # not the submission's fault: it does not use up its attempts
            fields={"last_error": detail},
        )
        return "retrying"

    async def _schedule_retry(
        self, entry: Entry, record: SubmissionRecord, exc: TransientError
    ) -> str:
        attempts = record.attempts
        detail: dict[str, Any] = (
            _close_error_detail(exc) if isinstance(exc, CloseError) else {"error": str(exc)}
        )
        delay = retry_delay(attempts, base=self.retry.base, cap=self.retry.cap)
        delay = max(delay, float(getattr(exc, "retry_after", 0.0)))
        due = time.time() + delay
        started = max(record.received_at, float(record.extra.get("replayed_at") or 0))
        if attempts >= self.retry.max_attempts or due > started + self.retry.deadline:
            detail["reason"] = f"gave up after {attempts} attempts"
            return await self._end(entry, record, "dead", detail, fields={"last_error": detail})
        detail["retry_in_seconds"] = round(delay, 3)
        await self.queue.transition(
            record.id,
            "retrying",
            detail=detail,
            ack=entry,
            retry_at=due,
            source=record.source,
            fields={"last_error": detail, "next_attempt_at": repr(due)},
        )
        if self.metrics is not None:
            self.metrics.retries.labels(record.source).inc()
        logger.info("submission %s retrying in %.1fs: %s", record.id, delay, detail["error"])
        return "retrying"

    async def _end(
        self,
        entry: Entry,
        record: SubmissionRecord,
        state: str,
        detail: dict[str, Any],
        *,
        fields: Mapping[str, Any] | None = None,
        lead_id: str | None = None,
        held: Held | None = None,
    ) -> str:
        """Record the outcome and acknowledge the entry; with ``held``, the person's locks are
        released in the same step."""
        all_fields = dict(fields or {})
        if lead_id:
            all_fields["lead_id"] = lead_id
        person = None
        if held is not None and held.identities:
            person = self._person(held, release_token=held.token)
        await self.queue.transition(
            record.id,
            state,
            detail=detail,
            fields=all_fields,
            ack=entry,
            dead=state == "dead",
            source=record.source,
            person=person,
        )
        if person is not None and held is not None:
            held.released = True
        if self.metrics is not None:
            self.metrics.submissions.labels(record.source, state).inc()
            self.metrics.end_to_end_seconds.labels(record.source, state).observe(
                max(0.0, time.time() - record.received_at)
            )
        log = logger.warning if state in ("dead", "rejected") else logger.info
        log("submission %s %s (source %s)", record.id, state, record.source)
        return state


def _has_person(lead: Mapping[str, Any], mapped: MappedLead) -> bool:
    """Whether a contact of ``lead`` is this person: by email when the submission has one (a
    shared office phone does not make two people one), else by phone."""
    email, phone = mapped.identity.email, mapped.identity.phone
    for contact in lead.get("contacts") or []:
        if email:
            if email in {str(e.get("email", "")).lower() for e in contact.get("emails") or []}:
                return True
        elif phone and phone in {str(p.get("phone", "")) for p in contact.get("phones") or []}:
            return True
    return False
