"""The steps after the lead, each exactly once: the contact policy and the note today; the
follow-ups of a source (owner, task, sequence, lead update, opportunity, custom activity, the
identity link) are steps of the same kind.

A step is a class with a ``name`` (its key in ``Progress.steps``), :meth:`Step.wanted` (does this
submission need it), :meth:`Step.run` (do it) and :meth:`Step.find` (look in Close for the
effect of an earlier attempt whose answer was lost). :class:`StepRunner` runs a list of them:

- a step already ``done``, ``skipped`` or ``failed`` in the record is not run again (a retry or a
  replay resumes after it);
- before a step sends anything, the record says ``started`` (one Redis write, which also carries
  what the attempt kept pending); a step found ``started`` runs :meth:`Step.find` first, and
  is sent again only when its effect is not found;
- a request that surely did not reach Close (a 429, no connection) takes the ``started`` mark
  back; any other transient failure leaves it, and the submission goes to the retry schedule;
- Close refusing a step for good (4xx) marks it ``failed`` with Close's answer, counts it, and
  the next steps still run: a failed follow-up never undoes or hides the lead.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from service.close.client import CloseClient
from service.config.settings import Settings
from service.config.sources import SourceConfig
from service.errors import CloseRateLimited, CloseRefused, CloseUnavailable
from service.mapping import MappedLead
from service.mapping.note import has_marker
from service.metrics import Metrics
from service.queue.progress import MarkState, StepMark
from service.worker.lookup import about_missing_lead, has_person
from service.worker.outcomes import Attempt, close_error_detail


class LeadGone(Exception):
    """Close says the lead a step named does not exist (any more): deleted or merged."""

    def __init__(self, refusal: CloseRefused) -> None:
        self.refusal = refusal
        super().__init__(str(refusal))


@dataclass(slots=True)
class StepContext:
    """What a step knows: the attempt, the mapped submission, its lead, its source."""

    attempt: Attempt
    mapped: MappedLead
    lead_id: str
    created: bool
    """This submission created the lead (a follow-up may differ for a match)."""
    source: SourceConfig
    close: CloseClient
    lead: dict[str, Any] | None = None
    """The lead as Close last answered with it in this attempt (the create's answer, a read,
    an update's answer); None until a step needs it."""
    made: bool | None = None
    """This submission made the lead, also when its create's answer was lost and this attempt
    found the lead (the follow-ups decide it before the steps run); None: as ``created``."""

    async def read_lead(self) -> dict[str, Any]:
        """The lead, read from Close once per attempt (``lead`` when already known)."""
        if self.lead is None:
            self.lead = await self.close.get_lead(self.lead_id)
        return self.lead

    found: Mapping[str, Any] | None = None
    """The lead as this attempt's search answered it, contacts included (None: not searched
    in this attempt)."""


@dataclass(frozen=True, slots=True)
class Done:
    """What a step did: ``close_id`` of what it made or found, or ``skipped`` with the reason
    nothing was needed, and step-specific ``detail`` for the record."""

    close_id: str | None = None
    skipped: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


class Step(ABC):
    name: ClassVar[str]

    @abstractmethod
    def wanted(self, ctx: StepContext) -> bool:
        """Whether this submission needs the step at all (not recorded when it does not)."""

    @abstractmethod
    async def run(self, ctx: StepContext) -> Done:
        """Do it (raises CloseError subclasses like every Close call)."""

    async def find(self, ctx: StepContext) -> Done | None:
        """The effect of an attempt whose answer was lost, when Close shows it; None sends the
        step again. Steps that can tell override this."""
        return None


class ContactStep(Step):
    """The ``contact`` policy on a match: add the person to the lead unless a contact already
    has their email (or, without one, their phone)."""

    name = "contact"

    def wanted(self, ctx: StepContext) -> bool:
        return (
            not ctx.created
            and ctx.source.dedup.on_match == "contact"
            and ctx.mapped.contact is not None
        )

    async def run(self, ctx: StepContext) -> Done:
        # The search that found the lead in this attempt answered its contacts: no GET then.
        # (A step found started, on a later attempt, looks in Close itself: ``find``.)
        known = ctx.found is not None and has_person(ctx.found, ctx.mapped.identity)
        if known or (ctx.found is None and await self.find(ctx) is not None):
            return Done(skipped="the person is already a contact of the lead")
        assert ctx.mapped.contact is not None
        contact = await ctx.close.create_contact(ctx.lead_id, ctx.mapped.contact)
        return Done(close_id=str(contact.get("id") or "") or None)

    async def find(self, ctx: StepContext) -> Done | None:
        lead = await ctx.close.get_lead(ctx.lead_id)
        if has_person(lead, ctx.mapped.identity):
            return Done(detail={"found": "a contact of the lead has the person's email or phone"})
        return None


class NoteStep(Step):
    """The submission as a note on the lead. Every note ends with the submission's marker
    (``mapping/note.py``): after a lost answer, :meth:`find` looks for it among the lead's
    notes made since the step began (less ``clock_skew``, how far Close's clock may be behind
    ours) and the note is not posted twice."""

    name = "note"

    def __init__(self, clock_skew: float) -> None:
        self.clock_skew = clock_skew

    def wanted(self, ctx: StepContext) -> bool:
        return bool(ctx.mapped.note)

    async def run(self, ctx: StepContext) -> Done:
        assert ctx.mapped.note is not None
        note = await ctx.close.create_note(ctx.lead_id, ctx.mapped.note)
        return Done(close_id=str(note.get("id") or "") or None)

    async def find(self, ctx: StepContext) -> Done | None:
        mark = ctx.attempt.progress.steps.get(self.name)
        started = mark.at if mark is not None else time.time()
        moment = datetime.fromtimestamp(int(started - self.clock_skew), UTC)
        since = moment.isoformat(timespec="seconds")
        submission = ctx.attempt.record.id
        for note in await ctx.close.notes_of(ctx.lead_id, since=since):
            text = f"{note.get('note') or ''}\n{note.get('note_html') or ''}"
            if has_marker(text, submission):
                found = "a note of the lead carries the submission's marker"
                return Done(close_id=str(note.get("id") or "") or None, detail={"found": found})
        return None


Record = Callable[[Attempt, dict[str, Any]], Awaitable[None]]
"""Writes the attempt's state (``processing``) with a history event's detail."""


class StepRunner:
    """Runs the steps of one attempt in order, recording each as it goes."""

    def __init__(self, record: Record, metrics: Metrics | None = None) -> None:
        self.record = record
        self.metrics = metrics

    async def run(self, ctx: StepContext, steps: Sequence[Step]) -> None:
        for step in steps:
            mark = ctx.attempt.progress.steps.get(step.name)
            if mark is not None and mark.final:
                continue
            if not step.wanted(ctx):
                continue
            await self._one(ctx, step, resumed=mark is not None)

    async def _one(self, ctx: StepContext, step: Step, *, resumed: bool) -> None:
        attempt = ctx.attempt
        try:
            if resumed:
                found = await step.find(ctx)
                if found is not None:
                    self._finish(ctx, step, found, "found after a lost answer")
                    return
            # A resumed step keeps its first start: a later find looks back to it (the lost
            # answer's effect may be older than this attempt, and on another lead since a merge).
            earlier = attempt.progress.steps.get(step.name) if resumed else None
            started = earlier.at if earlier is not None else time.time()
            attempt.progress = attempt.progress.marked(step.name, StepMark("started", started))
            await self.record(attempt, {"step": f"{step.name} started"})
            try:
                done = await step.run(ctx)
            except (CloseUnavailable, CloseRateLimited) as exc:
                if isinstance(exc, CloseRateLimited) or not exc.maybe_applied:
                    # Nothing reached Close: no effect to look for next time.
                    steps = {k: v for k, v in attempt.progress.steps.items() if k != step.name}
                    attempt.progress = attempt.progress.changed(steps=steps)
                raise
        except CloseRefused as exc:
            if about_missing_lead(exc):
                raise LeadGone(exc) from exc
            error = close_error_detail(exc)
            if exc.response is not None:
                error["close_response"] = exc.response.body
            mark = StepMark("failed", time.time(), reason=str(exc), error=error)
            attempt.progress = attempt.progress.marked(step.name, mark)
            attempt.defer({"step": f"{step.name} failed", **close_error_detail(exc)})
            self._count(ctx, step, "failed")
            return
        self._finish(ctx, step, done, None)

    def _finish(self, ctx: StepContext, step: Step, done: Done, how: str | None) -> None:
        attempt = ctx.attempt
        state: MarkState = "skipped" if done.skipped else "done"
        detail = dict(done.detail)
        if how:
            detail["how"] = how
        mark = StepMark(
            state, time.time(), close_id=done.close_id, reason=done.skipped, detail=detail
        )
        attempt.progress = attempt.progress.marked(step.name, mark)
        event: dict[str, Any] = {"step": f"{step.name} {state}"}
        if done.close_id:
            event["close_id"] = done.close_id
        if done.skipped:
            event["reason"] = done.skipped
        attempt.defer(event)
        self._count(ctx, step, state)

    def _count(self, ctx: StepContext, step: Step, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.steps.labels(ctx.attempt.record.source, step.name, outcome).inc()


STEPS: tuple[Step, ...] = (
    ContactStep(),
    NoteStep(Settings.model_fields["close_clock_skew_seconds"].default),
)
"""The steps after the lead of a source without follow-ups, in the order they run (with them:
``followup_steps.all_steps``)."""
