"""The follow-ups of every source, kept resolved against the Close organisation, and what the
pipeline asks of them: the owner of a lead about to be created, and the list of steps.

:class:`FollowupPlans` is a worker service like the mapper set: at start it reads what the
sources' follow-ups name (users, groups, sequences, sender accounts, pipelines, custom
activity types: ``service/close/directory.py``) and resolves every source's plan
(``plan.py``); a name Close does not know stops the worker with every problem listed. It reads
them again every ``refresh_seconds``; a refresh that no longer fits keeps the previous plans
and says why, loudly. Sources without follow-ups cost no call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from service.close.client import CloseClient
from service.close.directory import Directory, Needs, fetch_directory
from service.close.fieldnames import FieldNames
from service.config.sources import Sources
from service.errors import ConfigError, ConfigIssue
from service.mapping import CloseSchema, MappedLead, Mapper
from service.metrics import Metrics
from service.queue import Queue, Record
from service.queue.progress import MarkState, StepMark
from service.worker.bodies import holds_body, person_contact
from service.worker.mappers import MapperSet
from service.worker.outcomes import Attempt
from service.worker.owner import Owners
from service.worker.plan import Plan, needs_of, resolve
from service.worker.refresh import READ_ERRORS, every, read_until_answered
from service.worker.steps import Step, StepContext

logger = logging.getLogger(__name__)

OWNER_STEP = "owner"
LEAD_SUBMISSIONS = 200
"""The most submissions of one lead a lookup after a lost answer reads."""


def resolve_all(
    sources: Sources,
    mappers: Mapping[str, Mapper] | None,
    directory: Directory,
    schema: CloseSchema | None,
) -> tuple[dict[str, Plan], list[ConfigIssue]]:
    """Every source's plan, and every problem of every source."""
    plans: dict[str, Plan] = {}
    issues: list[ConfigIssue] = []
    for name, source in sources.items():
        if source.followup is None:
            continue
        mapper = mappers.get(name) if mappers is not None else None
        plan, found = resolve(
            name, source.followup, schema=schema, directory=directory, mapper=mapper
        )
        plans[name] = plan
        issues.extend(found)
    return plans, issues


def sources_need(sources: Sources) -> Needs:
    needs = Needs()
    for _, source in sources.items():
        needs = needs | needs_of(source.followup)
    return needs


class FollowupPlans:
    """``plans[source]``, kept in step with the organisation. Also a worker service."""

    def __init__(
        self,
        sources: Sources,
        close: CloseClient,
        mappers: MapperSet,
        *,
        refresh_seconds: float,
        names: FieldNames | None = None,
    ) -> None:
        self.names = names
        """Where the users' names are remembered for the admin plane (None: nowhere)."""
        self.sources = sources
        self.close = close
        self.mappers = mappers
        self.refresh_seconds = refresh_seconds
        self.needs = sources_need(sources)
        self.directory = Directory()
        self.plans: dict[str, Plan] = {}
        self.configured = any(s.followup is not None for _, s in sources.items())

    def get(self, source: str) -> Plan | None:
        return self.plans.get(source)

    async def _read(self) -> tuple[dict[str, Plan], list[ConfigIssue]]:
        directory = await fetch_directory(self.close, self.needs) if self.needs else Directory()
        plans, issues = resolve_all(self.sources, self.mappers, directory, self.mappers.schema)
        if not issues:
            self.directory = directory
            if self.names is not None:
                await self.names.remember_names({u.id: u.name for u in directory.users})
        return plans, issues

    async def start(self, stopping: asyncio.Event) -> None:
        """Resolve every source's follow-ups (waits until Close answers; ConfigError when a
        name does not resolve)."""
        if not self.configured:
            return
        read = await read_until_answered(self._read, stopping, "the follow-ups' Close objects")
        if read is None:
            return
        plans, issues = read
        if issues:
            raise ConfigError(issues)
        self.plans = plans

    async def run(self, stopping: asyncio.Event) -> None:
        if not self.configured:
            await stopping.wait()  # a service that returns would stop the worker
            return
        async for _ in every(self.refresh_seconds, stopping):
            try:
                plans, issues = await self._read()
            except READ_ERRORS as exc:
                logger.warning("refreshing the follow-ups failed (%s); keeping the last plans", exc)
                continue
            if issues:
                text = "\n".join(f"  - {issue}" for issue in issues)
                logger.error(
                    "the follow-ups no longer fit Close; keeping the last plans:\n%s", text
                )
                continue
            self.plans = plans


class Followups:
    """What the follow-up steps share: the plans, the owner rotation, the metrics."""

    def __init__(
        self,
        plans: FollowupPlans,
        owners: Owners,
        queue: Queue,
        *,
        clock_skew: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.plans = plans
        self.owners = owners
        self.queue = queue
        self.clock_skew = clock_skew
        self.metrics = metrics

    def plan(self, source: str) -> Plan | None:
        return self.plans.get(source)

    async def records_of(self, lead_id: str, but: str) -> list[Record]:
        """The other submissions that found or made ``lead_id`` (the worker's lead index)."""
        ids = await self.queue.index.submissions_of(lead_id=lead_id, limit=LEAD_SUBMISSIONS)
        found = await asyncio.gather(*(self.queue.records.get(i) for i in ids if i != but))
        return [record for record in found if record is not None]

    async def claimed(self, ctx: StepContext, step: str) -> set[str]:
        """What the lead's other submissions recorded making for ``step``: a lookup after a
        lost answer does not take another submission's object for this one's."""
        others = await self.records_of(ctx.lead_id, ctx.attempt.record.id)
        marks = (r.progress.steps.get(step) for r in others)
        return {m.close_id for m in marks if m is not None and m.close_id}

    async def prepare(self, ctx: StepContext) -> None:
        """Before the steps: did this submission make the lead it found? A create whose answer
        was lost made it when the lead holds what its create sent (name, description, custom
        fields) and no other submission of the person recorded making it; otherwise its create
        never reached Close, and its owner, chosen for that create, is dropped: the lead keeps
        the owner it has, as on any match."""
        progress = ctx.attempt.progress
        if ctx.created or progress.create_started_at is None:
            return
        others = await self.records_of(ctx.lead_id, ctx.attempt.record.id)
        made = not any(r.progress.lead_created and r.lead_id == ctx.lead_id for r in others)
        ctx.made = made and holds_body(await ctx.read_lead(), ctx.mapped.lead)
        mark = progress.steps.get(OWNER_STEP)
        if not ctx.made and mark is not None and mark.detail.get("when") == "create":
            steps = {k: v for k, v in progress.steps.items() if k != OWNER_STEP}
            ctx.attempt.progress = progress.changed(steps=steps)

    @property
    def directory(self) -> Directory:
        return self.plans.directory

    def count(self, source: str, step: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.steps.labels(source, step, outcome).inc()

    async def before_create(self, attempt: Attempt, mapped: MappedLead) -> MappedLead:
        """The lead body with its owner, decided once per submission: the owner step is
        recorded (written with "creating lead", before the POST), so a retry reuses it."""
        source = attempt.record.source
        plan = self.plan(source)
        if plan is None or plan.owner is None:
            return mapped
        mark = attempt.progress.steps.get(OWNER_STEP)
        if mark is None or not mark.final:
            found = await self.owners.assign(plan.owner, mapped.record, attempt.record.id, source)
            detail = {"how": found.how, "field": plan.owner.field_name, "when": "create"}
            if found.pool is not None:
                detail["pool"] = found.pool
            if found.turn is not None:
                detail["turn"] = str(found.turn)
            state: MarkState = "done" if found.user else "skipped"
            reason = None if found.user else found.how
            mark = StepMark(state, time.time(), close_id=found.user, reason=reason, detail=detail)
            attempt.progress = attempt.progress.marked(OWNER_STEP, mark)
            event = {"step": f"owner {state}", **({"close_id": found.user} if found.user else {})}
            attempt.defer(event)
            self.count(source, OWNER_STEP, state)
        if not mark.close_id:
            return mapped
        return replace(mapped, lead={**mapped.lead, plan.owner.field_key: mark.close_id})


# -- what the follow-up steps share (followup_steps.py) --------------------------------------


def made_here(ctx: StepContext) -> bool:
    """This submission made the lead (a create whose answer was lost counts, once
    :meth:`Followups.prepare` found no other submission made it)."""
    return ctx.created if ctx.made is None else ctx.made


def owner_of(ctx: StepContext) -> str | None:
    mark = ctx.attempt.progress.steps.get(OWNER_STEP)
    return mark.close_id if mark is not None and mark.state == "done" else None


def iso_utc(moment: float) -> str:
    """A lookup's ``date_created__gte``: whole seconds, rounded down."""
    return datetime.fromtimestamp(int(moment), UTC).isoformat(timespec="seconds")


def created_at(obj: Mapping[str, Any]) -> float:
    text = str(obj.get("date_created") or "")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


class FollowupStep(Step):
    """A step of a source's follow-ups: it knows the plans and the owner rotation."""

    def __init__(self, followups: Followups) -> None:
        self.fu = followups

    def plan(self, ctx: StepContext) -> Plan | None:
        return self.fu.plan(ctx.attempt.record.source)

    def since(self, ctx: StepContext) -> float:
        """Objects made by the attempt whose answer was lost were made after this: when its
        step was marked started, less the clock skew allowed between Close and us."""
        mark = ctx.attempt.progress.steps.get(self.name)
        started = mark.at if mark is not None else time.time()
        return started - self.fu.clock_skew

    async def made_since(
        self, ctx: StepContext, objects: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The objects Close made since :meth:`since` (the lookup's filter is whole seconds)
        that no other submission of the lead recorded as its own."""
        since = self.since(ctx)
        recent = [obj for obj in objects if created_at(obj) >= since]
        if not recent:
            return []
        claimed = await self.fu.claimed(ctx, self.name)
        return [obj for obj in recent if obj.get("id") not in claimed]

    async def contact(self, ctx: StepContext) -> Mapping[str, Any] | None:
        """The lead's contact that is the submitting person."""
        return person_contact(await ctx.read_lead(), ctx.mapped.identity)

    async def contact_id(self, ctx: StepContext) -> str | None:
        found = await self.contact(ctx)
        return str(found["id"]) if found is not None and found.get("id") else None
