"""How an attempt at a submission ends, recorded in one step each: a final state (the entry
acknowledged, the person's locks released, a dead letter where it is ``dead``), the retry
schedule after a transient failure, or a pause while Close refuses the API key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.backoff import retry_delay
from service.errors import CloseAuthFailed, CloseError, TransientError, field_errors
from service.metrics import Metrics
from service.queue import Entry, PersonUpdate, Progress, Queue, Record, State, Transition
from service.worker.gate import DeliveryGate
from service.worker.identity import Held

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: float
    cap: float
    max_attempts: int
    deadline: float
    """Seconds after receipt (or replay) after which a failing submission ends ``dead``."""


@dataclass(slots=True)
class Attempt:
    """One attempt at a submission: its record as claimed, and its progress as it grows.

    Every state change of the attempt is built here (:meth:`transition`) and records the whole
    progress, so a retry resumes after the last recorded step. What need not be durable at once
    (a match, a lead created and cached, a step done) is kept pending and goes with the next
    change, which is always written before anything more is sent to Close: one Redis round trip
    per request to Close, not two."""

    record: Record
    progress: Progress
    lead_id: str | None = None
    """The lead this attempt works on (the record's, or the one it found or made)."""
    _events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    _person: PersonUpdate | None = None
    _lead_changed: bool = False

    @classmethod
    def of(cls, record: Record) -> Attempt:
        return cls(record, record.progress, record.lead_id)

    def defer(
        self,
        detail: Mapping[str, Any],
        *,
        person: PersonUpdate | None = None,
        lead_id: str | None = None,
    ) -> None:
        """Keep a step's history event (and what it writes about the person and the lead) for
        the next state change."""
        self._events.append((time.time(), dict(detail)))
        if person is not None:
            self._person = merge_person(self._person, person)
        if lead_id is not None:
            self.lead_id = lead_id or None
            self._lead_changed = True

    def transition(
        self,
        state: State,
        detail: Mapping[str, Any] | None = None,
        *,
        person: PersonUpdate | None = None,
        **changes: Any,
    ) -> Transition:
        """The next state change, carrying whatever was kept pending."""
        record = self.record
        merged = merge_person(self._person, person) if person is not None else self._person
        change = Transition(
            record.id,
            state,
            source=record.source,
            detail=detail,
            earlier=tuple(self._events),
            lead_id=(self.lead_id or "") if self._lead_changed else None,
            progress=self.progress,
            person=merged,
            **changes,
        )
        self._events, self._person, self._lead_changed = [], None, False
        return change


def _release(held: Held | None) -> PersonUpdate | None:
    """Releasing the person's locks with the state change that ends the attempt (and writing,
    while they are still held, what the attempt kept pending about the person)."""
    if held is None or not held.identities:
        return None
    return PersonUpdate(held.identities, release_token=held.token)


def _released(held: Held | None) -> None:
    if held is not None and held.identities:
        held.released = True


def merge_person(first: PersonUpdate | None, then: PersonUpdate) -> PersonUpdate:
    """One person update doing what ``first`` and then ``then`` do."""
    if first is None:
        return then
    return PersonUpdate(
        identities=then.identities or first.identities,
        cache_lead=then.cache_lead or first.cache_lead,
        cache_ttl=then.cache_ttl or first.cache_ttl,
        mark_creating=then.mark_creating or first.mark_creating,
        mark_ttl=then.mark_ttl or first.mark_ttl,
        clear_creating=then.clear_creating or first.clear_creating,
        release_token=then.release_token or first.release_token,
    )


def close_error_detail(exc: CloseError) -> dict[str, Any]:
    """What a Close error says, as a history event's detail and the record's last error."""
    detail: dict[str, Any] = {"error": str(exc)}
    if exc.response is not None:
        detail["status"] = exc.response.status
        lines = field_errors(exc.response.body)
        if lines:
            detail["field_errors"] = list(lines)
    return detail


class Outcomes:
    """Records the end of attempts (and counts them in the metrics)."""

    def __init__(
        self,
        queue: Queue,
        retry: RetryPolicy,
        *,
        gate: DeliveryGate,
        metrics: Metrics | None = None,
    ) -> None:
        self.queue = queue
        self.retry = retry
        self.gate = gate
        self.metrics = metrics

    async def give_up(self, entry: Entry, reason: str) -> str:
        """Dead-letter an entry that cannot be processed at all (never retried again)."""
        await self.queue.steps.apply(
            Transition(
                entry.sub_id,
                "dead",
                source=entry.source,
                detail={"reason": reason},
                last_error={"reason": reason},
                ack=entry,
                dead=True,
            )
        )
        logger.error("submission %s dead: %s", entry.sub_id, reason)
        if self.metrics is not None:
            self.metrics.submissions.labels(entry.source, "dead").inc()
        return "dead"

    async def pause_for_auth(
        self, entry: Entry, attempt: Attempt, exc: CloseAuthFailed, held: Held | None = None
    ) -> str:
        await self.gate.close_for_auth(exc)
        detail = {**close_error_detail(exc), "reason": "Close refused the API key; paused"}
        # Not the submission's fault: it does not use up an attempt.
        due = time.time() + self.gate.probe_seconds
        await self._retrying(entry, attempt, detail, due, held, attempts_delta=-1)
        return "retrying"

    async def wait(self, entry: Entry, attempt: Attempt, detail: dict[str, Any], due: float) -> str:
        """Back on the schedule at ``due`` without using up an attempt: the submission waits
        for something that is not its fault (a paused source, a provider's rate limit)."""
        await self._retrying(entry, attempt, detail, due, None, attempts_delta=-1)
        return "retrying"

    async def _retrying(
        self,
        entry: Entry,
        attempt: Attempt,
        detail: dict[str, Any],
        due: float,
        held: Held | None,
        *,
        attempts_delta: int = 0,
    ) -> None:
        await self.queue.steps.apply(
            attempt.transition(
                "retrying",
                detail,
                person=_release(held),
                last_error=detail,
                ack=entry,
                retry_at=due,
                attempts_delta=attempts_delta,
            )
        )
        _released(held)

    async def schedule_retry(
        self, entry: Entry, attempt: Attempt, exc: TransientError, held: Held | None = None
    ) -> str:
        record = attempt.record
        attempts = record.attempts
        detail: dict[str, Any] = (
            close_error_detail(exc) if isinstance(exc, CloseError) else {"error": str(exc)}
        )
        delay = retry_delay(attempts, base=self.retry.base, cap=self.retry.cap)
        delay = max(delay, float(getattr(exc, "retry_after", 0.0)))
        due = time.time() + delay
        started = max(record.received_at, record.replayed_at or 0.0)
        if attempts >= self.retry.max_attempts or due > started + self.retry.deadline:
            detail["reason"] = f"gave up after {attempts} attempts"
            return await self.end(entry, attempt, "dead", detail, held=held, last_error=detail)
        detail["retry_in_seconds"] = round(delay, 3)
        attempt.progress = attempt.progress.changed(next_attempt_at=due)
        await self._retrying(entry, attempt, detail, due, held)
        if self.metrics is not None:
            self.metrics.retries.labels(record.source).inc()
        logger.info("submission %s retrying in %.1fs: %s", record.id, delay, detail["error"])
        return "retrying"

    async def end(
        self,
        entry: Entry,
        attempt: Attempt,
        state: State,
        detail: dict[str, Any],
        *,
        held: Held | None = None,
        last_error: Any = None,
        close_response: Any = None,
        warnings: Sequence[str] = (),
    ) -> str:
        """Record the outcome and acknowledge the entry; with ``held``, the person's locks are
        released in the same step."""
        record = attempt.record
        if state == "rejected" and last_error is None:
            last_error = detail  # the reason (and its code) stays readable on the record
        await self.queue.steps.apply(
            attempt.transition(
                state,
                detail,
                person=_release(held),
                last_error=last_error,
                close_response=close_response,
                warnings=warnings,
                ack=entry,
                dead=state == "dead",
            )
        )
        _released(held)
        if self.metrics is not None:
            self.metrics.submissions.labels(record.source, state).inc()
            self.metrics.end_to_end_seconds.labels(record.source, state).observe(
                max(0.0, time.time() - record.received_at)
            )
        log = logger.warning if state in ("dead", "rejected") else logger.info
        log("submission %s %s (source %s)", record.id, state, record.source)
        return state
