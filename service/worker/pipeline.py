"""Processing one submission: map it, find or create the person's lead, record the outcome.

Every path ends in exactly one recorded outcome for the attempt: a terminal state (the entry
acknowledged and deleted in the same script), or ``retrying`` with a due time in the retry
schedule. An exception escaping ``handle`` leaves the entry pending, so another worker reclaims
it after the visibility timeout: nothing is lost.

Effectively-once leads, although Close has no idempotency key:

- one person's submissions are processed one at a time (identity locks, all workers);
- before creating, the person is looked up: the local cache, then one Close search (email or
  phone); the cache is written right after a create, so search-index lag cannot hide a
  lead this service made;
- the record is marked before the create POST; a later attempt that finds the mark but no lead
  id (a crash, a timeout, a 5xx: outcome unknown) looks the person up again, then asks Close's
  event log for the leads this service's user created since the mark (``worker/unknown.py``),
  and creates again only when neither shows the person's lead (the grace period for Close's
  search index is the fallback when the event log cannot be read);
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
from collections.abc import Mapping
from typing import Any

from service.close.client import CloseClient
from service.config.sources import SourceConfig, Sources
from service.envelope import Envelope
from service.errors import (
    CloseAuthFailed,
    CloseRateLimited,
    CloseRefused,
    CloseUnavailable,
    MappingRejected,
    TransientError,
)
from service.mapping import MappedLead, Mapper
from service.metrics import Metrics
from service.queue import Entry, PersonUpdate, Queue, State
from service.worker.followup_steps import all_steps
from service.worker.followups import Followups
from service.worker.gate import DeliveryGate
from service.worker.hydrate import Hydrate
from service.worker.identity import Held, IdentityLocks, LeadCache, identity_keys
from service.worker.links import LinkStep, link_of, lost_create_link
from service.worker.lookup import Match, find_lead
from service.worker.outcomes import Attempt, Outcomes, RetryPolicy, close_error_detail
from service.worker.steps import LeadGone, Step, StepContext, StepRunner
from service.worker.unknown import OWN_LEAD_FOUND, AwaitingIndex, UnknownCreates

logger = logging.getLogger(__name__)

__all__ = ["AwaitingIndex", "Pipeline", "StaleCachedLead"]


class StaleCachedLead(TransientError):
    """The cached lead of this person no longer exists in Close (deleted or merged)."""


class Pipeline:
    """Everything one worker task does with one stream entry."""

    def __init__(
        self,
        queue: Queue,
        close: CloseClient,
        mappers: Mapping[str, Mapper],
        sources: Sources,
        retry: RetryPolicy,
        *,
        locks: IdentityLocks,
        cache: LeadCache,
        gate: DeliveryGate,
        unknown_outcome_grace: float,
        event_log_lag: float,
        clock_skew: float,
        metrics: Metrics | None = None,
        followups: Followups | None = None,
        hydrate: Hydrate | None = None,
    ) -> None:
        self.queue = queue
        self.close = close
        self.mappers = mappers
        self.sources = sources
        self.locks = locks
        self.cache = cache
        self.unknown_outcome_grace = unknown_outcome_grace
        self.unknown = UnknownCreates(
            close,
            queue,
            grace=unknown_outcome_grace,
            event_lag=event_log_lag,
            clock_skew=clock_skew,
        )
        self.outcomes = Outcomes(queue, retry, gate=gate, metrics=metrics)
        self.steps = StepRunner(self._step, metrics)
        self.followups = followups
        self.links = queue.links
        self.link_step = LinkStep(queue, locks, cache_ttl=cache.ttl, metrics=metrics)
        self.step_list: tuple[Step, ...] = (self.link_step, *all_steps(followups))
        self.hydrate = hydrate

    async def give_up(self, entry: Entry, reason: str) -> str:
        """Dead-letter an entry that cannot be processed at all (never retried again)."""
        return await self.outcomes.give_up(entry, reason)

    async def handle(self, entry: Entry) -> str:
        """Process one entry; returns the state it was left in."""
        # Read the record and mark it processing (the attempt counted) in one step; an expired,
        # erased or already finished one (acknowledging failed last time) is acknowledged.
        claimed = await self.queue.steps.claim(entry)
        if claimed.fields is None:
            return claimed.state or "gone"
        try:
            record = claimed.record()
        except (ValueError, TypeError, KeyError) as exc:  # the stored record is damaged
            return await self.outcomes.give_up(
                entry, f"the stored record could not be read ({exc})"
            )
        return await self._process(entry, Attempt.of(record))

    async def _process(self, entry: Entry, attempt: Attempt) -> str:
        record = attempt.record
        try:
            envelope = Envelope.from_json(record.envelope or "")
        except (ValueError, KeyError, TypeError):
            detail = {"reason": "corrupt envelope"}
            return await self.outcomes.end(entry, attempt, "rejected", detail)
        mapper = self.mappers.get(record.source)
        source = self.sources.get(record.source)
        if mapper is None or source is None:
            reason = f"source {record.source!r} is no longer configured"
            return await self.outcomes.end(entry, attempt, "dead", {"reason": reason})
        if self.hydrate is not None:  # fetch the person a thin payload names (worker/hydrate.py)
            hydrated = await self.hydrate(entry, attempt, envelope)
            if isinstance(hydrated, str):
                return hydrated  # the attempt ended: waiting for the provider, or refused
            envelope = hydrated
        try:
            mapped = mapper.map(envelope)
        except MappingRejected as exc:
            detail = {"reason": exc.reason, **exc.detail}
            return await self.outcomes.end(entry, attempt, "rejected", detail)
        identities = identity_keys(mapped.identity)
        try:
            async with self.locks.hold(identities) as held:
                # Every outcome is recorded while the person's locks are held, and releases them.
                try:
                    return await self._deliver(entry, attempt, mapped, held, source)
                except CloseRefused as exc:
                    detail = close_error_detail(exc)
                    body = exc.response.body if exc.response else None
                    return await self.outcomes.end(
                        entry,
                        attempt,
                        "dead",
                        detail,
                        held=held,
                        last_error=detail,
                        close_response=body,
                    )
                except CloseAuthFailed as exc:
                    return await self.outcomes.pause_for_auth(entry, attempt, exc, held)
                except TransientError as exc:
                    return await self.outcomes.schedule_retry(entry, attempt, exc, held)
        except TransientError as exc:  # the person's locks were not free in time
            return await self.outcomes.schedule_retry(entry, attempt, exc)

    # -- the lead ---------------------------------------------------------------------------

    async def _deliver(
        self,
        entry: Entry,
        attempt: Attempt,
        mapped: MappedLead,
        held: Held,
        source: SourceConfig,
    ) -> str:
        dedup = source.dedup
        created = attempt.progress.lead_created
        via = attempt.progress.matched_via or ""
        lead_id = attempt.lead_id
        lead: dict[str, Any] | None = None
        found = None
        if lead_id is None:
            match = None
            if dedup.on_match != "create":
                match = await find_lead(
                    self.close, held.cached_lead, mapped.identity, dedup.choose, held.cached_leads
                )
            # Two leads for this person: the link step applies the source's policy.
            link = (
                link_of(match, held.identities, held.cached_leads, attempt.record.id)
                if match is not None
                else None
            )
            own = None
            if match is not None and attempt.progress.create_started_at:
                own, link = await self._own_lead(attempt, mapped, held, match, link)
            if own is not None:  # the lead of this submission's own create, its answer lost
                lead = self._found_in_log(attempt, held, own, True, step=OWN_LEAD_FOUND)
                lead_id, created = str(own["id"]), True
                attempt.progress = attempt.progress.changed(link=link)
            elif match is not None:
                lead_id, via, found = match.lead_id, match.via, match.found
                # A lead found by search is cached in the same step that records the match.
                attempt.progress = attempt.progress.changed(
                    matched_via=via, candidates=match.candidates, link=link
                )
                matched = {"step": "matched", "lead_id": lead_id, "via": via}
                if link is not None:
                    matched["linked"] = link["leads"][1]
                # Every identity of the submission now names the lead (one the cache did not
                # know yet included: the person's next submission with only that one finds it).
                known = via == "cache" and all(c == lead_id for c in held.cached_leads)
                attempt.defer(
                    matched,
                    person=self._person(held, cache_lead="" if known else lead_id),
                    lead_id=lead_id,
                )
            else:
                if self.followups is not None:  # the owner goes into the create body
                    mapped = await self.followups.before_create(attempt, mapped)
                lead, created = await self._create(attempt, mapped, held)
                lead_id = str(lead["id"])
                if not created:
                    via = "event log"
        ctx = StepContext(attempt, mapped, lead_id, created, source, self.close, lead, found=found)
        # The person had a lead and the source wants nothing more done on it; an identity link
        # the match showed still gets the source's policy (a merge, a flag).
        skip = dedup.on_match == "skip" and not created
        try:
            await self._run_steps(ctx, (self.link_step,) if skip else self.step_list)
        except LeadGone as gone:
            if created:
                raise gone.refusal from None  # the lead it made is gone: Close's answer says why
            # The lead we matched is gone (deleted or merged): look the person up afresh.
            await self.cache.forget(list(held.identities))
            attempt.progress = attempt.progress.changed(matched_via=None, steps={}, link=None)
            attempt.defer({"step": "matched lead gone", "lead_id": lead_id}, lead_id="")
            raise StaleCachedLead(f"lead {lead_id} no longer exists in Close") from None
        if skip:
            candidates = list(attempt.progress.candidates)
            skipped = {"lead_id": ctx.lead_id, "via": via, "candidates": candidates}
            return await self.outcomes.end(entry, attempt, "skipped", skipped, held=held)
        state: State = "created" if created else "attached"
        detail: dict[str, Any] = {"lead_id": ctx.lead_id}
        if via:
            detail["via"] = via
        failed = [name for name, mark in attempt.progress.steps.items() if mark.state == "failed"]
        if failed:
            detail["failed_steps"] = failed
        return await self.outcomes.end(
            entry, attempt, state, detail, held=held, warnings=mapped.warnings
        )

    async def _run_steps(self, ctx: StepContext, steps: tuple[Step, ...]) -> None:
        """``steps`` after the lead; a lead merged away (the merge map, or Close's event log,
        says into which) is followed to the kept lead, and the remaining steps run there."""
        seen = {ctx.lead_id}
        while True:
            try:
                if self.followups is not None and steps is self.step_list:
                    await self.followups.prepare(ctx)
                await self.steps.run(ctx, steps)
                return
            except LeadGone:
                kept = await self.links.follow(ctx.lead_id)
                kept = kept or await self.unknown.merged_into(ctx.lead_id)
                if kept is None or kept in seen:  # no merge known, or a map gone round in a loop
                    raise
                seen.add(kept)
                event = {"step": "lead merged", "from": ctx.lead_id, "to": kept}
                ctx.attempt.defer(event, lead_id=kept)
                ctx.lead_id, ctx.lead, ctx.found = kept, None, None

    async def _own_lead(
        self,
        attempt: Attempt,
        mapped: MappedLead,
        held: Held,
        match: Match,
        link: dict[str, Any] | None,
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """A match met by an attempt whose create's answer was lost: the lead that create made
        (None when it made none) and the link. The match itself may be that lead; else the
        event log tells whether the create made another, and then the two are a link (another
        submission of the person found the match meanwhile, knowing nothing of this one)."""
        record, started = attempt.record, attempt.progress.create_started_at
        assert started is not None
        before = self.unknown.later_mark(held.creating_now(), record.id, started)
        own = await self.unknown.own_lead(record.id, match.lead_id, started, before)
        if own is not None:
            return own, link
        made = await self.unknown.resolve(record.id, mapped.identity, started, before)
        if made is None or not made.mine or str(made.lead["id"]) == match.lead_id:
            return None, link
        return made.lead, lost_create_link(made.lead, match, held, record.id)

    def _person(self, held: Held, **changes: Any) -> PersonUpdate:
        if changes.get("cache_lead"):
            changes["cache_ttl"] = self.cache.ttl
        return PersonUpdate(held.identities, **changes)

    async def _create(
        self, attempt: Attempt, mapped: MappedLead, held: Held
    ) -> tuple[dict[str, Any], bool]:
        """The person's new lead and True; or, when an earlier create's answer was lost, the
        lead Close's event log shows it made (True) or another submission made (False)."""
        record = attempt.record
        started = attempt.progress.create_started_at
        if started:
            before = self.unknown.later_mark(held.creating_now(), record.id, started)
            found = await self.unknown.resolve(record.id, mapped.identity, started, before)
            if found is not None:
                return self._found_in_log(attempt, held, found.lead, found.mine), found.mine
        # Another submission of this person sent a create whose answer was lost: its lead may
        # exist although Close's search does not show it yet; the event log tells.
        # (The marks were read with the locks; only a holder of the locks writes them.)
        identities = list(held.identities)
        other = held.creating_now()
        if other is not None and other[0] != record.id:
            found = await self.unknown.resolve_other(record.id, mapped.identity, *other)
            if found is not None:
                return self._found_in_log(attempt, held, found.lead, False), False
        # Marked before the POST, in one step: a crash or timeout from here on is detected on
        # redelivery, by this submission (its record) and by the person's others (the marks).
        attempt.progress = attempt.progress.changed(create_started_at=time.time())
        await self._step(
            attempt,
            {"step": "creating lead"},
            person=self._person(
                held,
                mark_creating=record.id if self.unknown_outcome_grace > 0 else "",
                mark_ttl=self.unknown.mark_ttl,
            ),
        )
        try:
            lead = await self.close.create_lead(mapped.lead)
        except (CloseUnavailable, CloseRateLimited) as exc:
            if isinstance(exc, CloseUnavailable) and exc.maybe_applied:
                raise
            # Nothing reached Close (429, or no connection): no unknown outcome to wait out.
            attempt.progress = attempt.progress.changed(create_started_at=None)
            attempt.defer(
                {"step": "create not sent"}, person=self._person(held, clear_creating=True)
            )
            raise
        except (CloseRefused, CloseAuthFailed):
            await self.cache.clear_creating(identities)  # refused: no lead was made
            raise
        return self._found_in_log(attempt, held, lead, True, step="lead created"), True

    def _found_in_log(
        self,
        attempt: Attempt,
        held: Held,
        lead: dict[str, Any],
        mine: bool,
        *,
        step: str = "lead found in the event log",
    ) -> dict[str, Any]:
        """Record the person's lead: made by this submission (``mine``) or by another. The
        lead cached (the person's next submission finds it even while Close's search lags) and
        the marks cleared with the next change, still under the person's locks."""
        lead_id = str(lead["id"])
        attempt.progress = attempt.progress.changed(
            lead_created=mine,
            lead_url=lead.get("html_url") if mine else attempt.progress.lead_url,
            matched_via=None if mine else "event log",
            create_started_at=None,
        )
        event: dict[str, Any] = {"step": step, "lead_id": lead_id}
        if not mine:
            event["made_by"] = "another submission"
        attempt.defer(
            event,
            person=self._person(held, cache_lead=lead_id, clear_creating=True),
            lead_id=lead_id,
        )
        return lead

    async def _step(
        self, attempt: Attempt, detail: dict[str, Any], *, person: PersonUpdate | None = None
    ) -> None:
        """Record the attempt's progress so far (still ``processing``), with what it kept
        pending."""
        await self.queue.steps.apply(attempt.transition("processing", detail, person=person))
