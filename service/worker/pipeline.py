"""Processing one submission: map it, send it to Close, record the outcome, acknowledge it.

Every path ends in exactly one recorded outcome for the attempt: a terminal state (the entry
acknowledged and deleted in the same script), or ``retrying`` with a due time in the retry
schedule. An exception escaping ``handle`` leaves the entry pending, so another worker reclaims
it after the visibility timeout: nothing is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.close.client import CloseClient
from service.envelope import Envelope
from service.errors import (
    CloseError,
    CloseRateLimited,
    CloseRefused,
    MappingRejected,
    TransientError,
    field_errors,
)
from service.mapping import MappedLead, Mapper
from service.queue.records import SubmissionRecord
from service.queue.stream import Entry, WorkQueue
from service.worker.backoff import retry_delay

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: float
    cap: float
    max_attempts: int


def _close_error_detail(exc: CloseError) -> dict[str, Any]:
    detail: dict[str, Any] = {"error": str(exc)}
    if exc.response is not None:
        detail["status"] = exc.response.status
        lines = field_errors(exc.response.body)
        if lines:
            detail["field_errors"] = list(lines)
    return detail


class Pipeline:
    """Everything one worker task does with one stream entry."""

    def __init__(
        self,
        queue: WorkQueue,
        close: CloseClient,
        mappers: Mapping[str, Mapper],
        retry: RetryPolicy,
    ) -> None:
        self.queue = queue
        self.close = close
        self.mappers = mappers
        self.retry = retry

    async def handle(self, entry: Entry) -> str:
        """Process one entry; returns the state it was left in."""
        record = await self.queue.record(entry.sub_id)
        if record is None or record.terminal:
            # Expired/erased, or already finished (acknowledging failed last time): drop the entry.
            await self.queue.transition(entry.sub_id, record.state if record else "gone", ack=entry)
            return record.state if record else "gone"
        attempts = await self.queue.transition(
            entry.sub_id,
            "processing",
            count_attempt=True,
            source=record.source,
            detail={"attempt": record.attempts + 1},
        )
        return await self._process(entry, record, attempts)

    async def _process(self, entry: Entry, record: SubmissionRecord, attempts: int) -> str:
        try:
            envelope = Envelope.from_json(record.envelope or "")
        except (ValueError, KeyError, TypeError):
            return await self._end(entry, record, "rejected", {"reason": "corrupt envelope"})
        mapper = self.mappers.get(record.source)
        if mapper is None:
            return await self._end(
                entry,
                record,
                "dead",
                {"reason": f"source {record.source!r} is no longer configured"},
            )
        try:
            mapped = mapper.map(envelope)
        except MappingRejected as exc:
            return await self._end(entry, record, "rejected", {"reason": exc.reason, **exc.detail})
        try:
            return await self._deliver(entry, record, mapped)
        except CloseRefused as exc:
            detail = _close_error_detail(exc)
            return await self._end(
                entry,
                record,
                "dead",
                detail,
                fields={
                    "last_error": detail,
                    "close_response": exc.response.body if exc.response else None,
                },
            )
        except TransientError as exc:
            return await self._schedule_retry(entry, record, attempts, exc)

    async def _deliver(self, entry: Entry, record: SubmissionRecord, mapped: MappedLead) -> str:
        lead_id = record.lead_id
        if lead_id is None:
            lead = await self.close.create_lead(mapped.lead)
            lead_id = str(lead["id"])
            # Keep the lead id at once: a later failure (the note) must not create it again.
            await self.queue.transition(
                record.id,
                "processing",
                source=record.source,
                detail={"lead_id": lead_id, "step": "lead created"},
                fields={"lead_id": lead_id, "lead_url": lead.get("html_url")},
            )
        if mapped.note:
            await self.close.create_note(lead_id, mapped.note)
        fields: dict[str, Any] = {"lead_id": lead_id}
        if mapped.warnings:
            fields["warnings"] = list(mapped.warnings)
        return await self._end(entry, record, "created", {"lead_id": lead_id}, fields=fields)

    async def _schedule_retry(
        self, entry: Entry, record: SubmissionRecord, attempts: int, exc: TransientError
    ) -> str:
        detail: dict[str, Any] = (
            _close_error_detail(exc) if isinstance(exc, CloseError) else {"error": str(exc)}
        )
        if attempts >= self.retry.max_attempts:
            detail["reason"] = f"gave up after {attempts} attempts"
            return await self._end(entry, record, "dead", detail, fields={"last_error": detail})
        delay = retry_delay(attempts, base=self.retry.base, cap=self.retry.cap)
        if isinstance(exc, CloseRateLimited):
            delay = max(delay, exc.retry_after)
        due = time.time() + delay
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
    ) -> str:
        await self.queue.transition(
            record.id,
            state,
            detail=detail,
            fields=fields,
            ack=entry,
            dead=state == "dead",
            source=record.source,
        )
        log = logger.warning if state in ("dead", "rejected") else logger.info
        log("submission %s %s (source %s)", record.id, state, record.source)
        return state
