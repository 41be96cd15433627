"""The follow-up steps (``steps.py`` has the framework), and their order.

Each is a :class:`~service.worker.steps.Step` recorded ``started`` before it sends and ``done``,
``skipped`` (with the reason) or ``failed`` (Close's answer) after; one found ``started`` looks
for its effect in Close first (:meth:`find`): the lead's tasks, the contact's subscriptions, the
lead's opportunities and custom activities created since the attempt began (less
``INTAKE_CLOSE_CLOCK_SKEW_SECONDS``), the lead's fields for an update. A lead made by this
submission (also one whose create's answer was lost and that the next attempt found) counts as
created: its follow-ups run as for a new lead.

Order: the owner, the update of a matched lead and its contact, the contact policy, the task
(what the rep acts on, first), the note, the custom activity, the opportunity, the sequence.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from service.errors import CloseRefused
from service.worker.bodies import (
    Skip,
    activity_body,
    contact_update,
    lead_update,
    opportunity_body,
    same_fields,
    subscription_body,
    task_body,
)
from service.worker.followups import (
    OWNER_STEP,
    Followups,
    FollowupStep,
    iso_utc,
    made_here,
    owner_of,
)
from service.worker.plan import Plan
from service.worker.steps import STEPS, ContactStep, Done, NoteStep, Step, StepContext


class OwnerStep(FollowupStep):
    """A matched lead's owner: kept, filled when it has none, or assigned again (a new lead's
    owner was decided before its create and went into the create body)."""

    name = OWNER_STEP

    def wanted(self, ctx: StepContext) -> bool:
        plan = self.plan(ctx)
        return plan is not None and plan.owner is not None

    async def run(self, ctx: StepContext) -> Done:
        plan = self.plan(ctx)
        assert plan is not None and plan.owner is not None
        owner = plan.owner
        current: Any = None if made_here(ctx) else (await ctx.read_lead()).get(owner.field_key)
        if isinstance(current, list):
            current = current[0] if current else None
        if current and owner.on_match in ("keep", "fill"):
            return Done(close_id=str(current), detail={"how": "the lead's owner is kept"})
        if not current and owner.on_match == "keep" and not made_here(ctx):
            return Done(skipped="the matched lead has no owner, and the source keeps owners")
        record = ctx.attempt.record
        found = await self.fu.owners.assign(owner, ctx.mapped.record, record.id, record.source)
        if found.user is None:
            return Done(skipped=found.how)
        detail: dict[str, Any] = {"how": found.how, "write": found.user != current}
        if found.pool is not None:
            detail["pool"] = found.pool
        return Done(close_id=found.user, detail=detail)


class UpdateStep(FollowupStep):
    """The one PUT of a re-submission: what each field's policy changes, the owner, a status
    rule. No PUT when nothing changes."""

    name = "update"

    def _owner_write(self, ctx: StepContext, plan: Plan) -> tuple[str, str] | None:
        mark = ctx.attempt.progress.steps.get(OWNER_STEP)
        if plan.owner is None or mark is None or not mark.close_id:
            return None
        return (plan.owner.field_key, mark.close_id) if mark.detail.get("write") else None

    def wanted(self, ctx: StepContext) -> bool:
        plan = self.plan(ctx)
        if plan is None or made_here(ctx):
            return False
        return plan.update is not None or self._owner_write(ctx, plan) is not None

    def _change(self, ctx: StepContext, lead: Mapping[str, Any]) -> Any:
        plan = self.plan(ctx)
        assert plan is not None
        owner = self._owner_write(ctx, plan)
        return lead_update(plan.update, ctx.mapped.lead, lead, owner=owner)

    async def run(self, ctx: StepContext) -> Done:
        change = self._change(ctx, await ctx.read_lead())
        if not change.body:
            return Done(skipped="nothing to change on the matched lead")
        ctx.lead = await ctx.close.update_lead(ctx.lead_id, change.body)
        return Done(close_id=ctx.lead_id, detail={"changes": change.changes})

    async def find(self, ctx: StepContext) -> Done | None:
        ctx.lead = await ctx.close.get_lead(ctx.lead_id)
        if self._change(ctx, ctx.lead).body:
            return None
        return Done(close_id=ctx.lead_id, detail={"found": "the lead holds the new values"})


class ContactDetailsStep(FollowupStep):
    """On a match, the submitted phone (or email) added to the person's contact."""

    name = "contact_details"

    def wanted(self, ctx: StepContext) -> bool:
        plan = self.plan(ctx)
        update = plan.update if plan is not None else None
        return (
            update is not None
            and update.contact == "add"
            and not made_here(ctx)
            and bool(ctx.mapped.contact)
        )

    async def run(self, ctx: StepContext) -> Done:
        contact = await self.contact(ctx)
        if contact is None:
            return Done(skipped="no contact of the lead is the person")
        change = contact_update(ctx.mapped.contact, contact)
        if not change.body:
            return Done(skipped="the contact has the submitted phone and email")
        await ctx.close.update_contact(str(contact["id"]), change.body)
        ctx.lead = None  # its contacts changed
        return Done(close_id=str(contact["id"]), detail={"changes": change.changes})

    async def find(self, ctx: StepContext) -> Done | None:
        ctx.lead = await ctx.close.get_lead(ctx.lead_id)
        contact = await self.contact(ctx)
        if contact is None or contact_update(ctx.mapped.contact, contact).body:
            return None
        return Done(close_id=str(contact["id"]), detail={"found": "the contact has them"})


class TaskStep(FollowupStep):
    """A task for the owner (or a fixed user), due after the configured delay."""

    name = "task"

    def wanted(self, ctx: StepContext) -> bool:
        plan = self.plan(ctx)
        if plan is None or plan.task is None or plan.spec.task is None:
            return False
        return plan.runs(plan.spec.task.on_match, created=made_here(ctx))

    async def _body(self, ctx: StepContext) -> dict[str, Any]:
        plan = self.plan(ctx)
        assert plan is not None and plan.task is not None
        return task_body(
            plan.task,
            ctx.mapped.record,
            lead_id=ctx.lead_id,
            owner=owner_of(ctx),
            contact_id=await self.contact_id(ctx),
            received_at=ctx.attempt.record.received_at,
        )

    def _made(self, ctx: StepContext, task: Mapping[str, Any]) -> Done:
        if self.fu.metrics is not None:
            record = ctx.attempt.record
            seconds = max(0.0, time.time() - record.received_at)
            self.fu.metrics.speed_to_lead.labels(record.source).observe(seconds)
        detail = {"assigned_to": task.get("assigned_to"), "date": task.get("date")}
        return Done(close_id=str(task.get("id") or "") or None, detail=detail)

    async def run(self, ctx: StepContext) -> Done:
        try:
            body = await self._body(ctx)
        except Skip as skip:
            return Done(skipped=str(skip))
        return self._made(ctx, await ctx.close.create_task(body))

    async def find(self, ctx: StepContext) -> Done | None:
        try:
            body = await self._body(ctx)
        except Skip:
            return None
        found = await ctx.close.tasks_of(ctx.lead_id, since=iso_utc(self.since(ctx)))
        for task in await self.made_since(ctx, found):
            if same_fields(body, task, ("text", "assigned_to", "_type")):
                return self._made(ctx, task)
        return None


class SequenceStep(FollowupStep):
    """The submitting contact subscribed to the sequence, sent from the owner's (or a fixed
    user's) connected account; skipped when already subscribed (also when Close refuses the
    subscription because it was made since the look) or the email is unsubscribed."""

    name = "sequence"

    def wanted(self, ctx: StepContext) -> bool:
        plan = self.plan(ctx)
        if plan is None or plan.sequence is None or plan.spec.sequence is None:
            return False
        return plan.runs(plan.spec.sequence.on_match, created=made_here(ctx))

    async def run(self, ctx: StepContext) -> Done:
        plan = self.plan(ctx)
        assert plan is not None and plan.sequence is not None
        contact = await self.contact(ctx)
        if contact is None:
            return Done(skipped="the lead has no contact for the person")
        emails = [e for e in contact.get("emails") or [] if e.get("email")]
        wanted = (ctx.mapped.identity.email or "").casefold()
        entry = next((e for e in emails if str(e["email"]).casefold() == wanted), None)
        entry = entry or (emails[0] if emails else None)
        if entry is None:
            return Done(skipped="the contact has no email address")
        if entry.get("is_unsubscribed"):
            return Done(skipped="the email address is unsubscribed")
        existing = await ctx.close.subscriptions_of(str(contact["id"]), plan.sequence.sequence_id)
        if existing:
            return self._subscribed(plan, existing[0])
        sender = plan.sequence.sender or owner_of(ctx)
        if sender is None:
            return Done(skipped="no owner to send the sequence as")
        accounts = self.fu.directory.accounts_of(sender)
        if not accounts:
            return Done(skipped=f"{sender} has no connected email account to send as")
        body = subscription_body(
            plan.sequence.sequence_id, contact, str(entry["email"]), accounts[0]
        )
        try:
            made = await ctx.close.subscribe(body)
        except CloseRefused:
            # Subscribed between the look and the send (by a rep, a workflow, another
            # integration): Close refuses a second subscription, and the contact is where the
            # step wanted it. A refusal for any other reason stays this step's failure.
            raced = await ctx.close.subscriptions_of(str(contact["id"]), plan.sequence.sequence_id)
            if not raced:
                raise
            return self._subscribed(plan, raced[0])
        detail = {"sequence": plan.sequence.name, "sender_account_id": accounts[0].id}
        return Done(close_id=str(made.get("id") or "") or None, detail=detail)

    @staticmethod
    def _subscribed(plan: Plan, subscription: Mapping[str, Any]) -> Done:
        assert plan.sequence is not None
        return Done(
            skipped=(
                f"already subscribed to {plan.sequence.name!r} ({subscription.get('status')})"
            ),
            detail={"subscription": subscription.get("id")},
        )

    async def find(self, ctx: StepContext) -> Done | None:
        plan = self.plan(ctx)
        contact = await self.contact(ctx)
        if plan is None or plan.sequence is None or contact is None:
            return None
        found = await ctx.close.subscriptions_of(str(contact["id"]), plan.sequence.sequence_id)
        for made in await self.made_since(ctx, found):
            return Done(close_id=str(made.get("id")), detail={"sequence": plan.sequence.name})
        return None


class OpportunityStep(FollowupStep):
    """An opportunity in the chosen pipeline and status; with ``if_none_active`` only when the
    lead has no active one in that pipeline."""

    name = "opportunity"

    def wanted(self, ctx: StepContext) -> bool:
        plan = self.plan(ctx)
        if plan is None or plan.opportunity is None or plan.spec.opportunity is None:
            return False
        return plan.runs(plan.spec.opportunity.on_match, created=made_here(ctx))

    async def _body(self, ctx: StepContext) -> Any:
        plan = self.plan(ctx)
        assert plan is not None and plan.opportunity is not None
        return opportunity_body(
            plan.opportunity,
            ctx.mapped.record,
            lead_id=ctx.lead_id,
            owner=owner_of(ctx),
            contact_id=await self.contact_id(ctx),
        )

    async def run(self, ctx: StepContext) -> Done:
        plan = self.plan(ctx)
        assert plan is not None and plan.opportunity is not None
        try:
            body, choice, how = await self._body(ctx)
        except Skip as skip:
            return Done(skipped=str(skip))
        if plan.opportunity.policy == "if_none_active":
            for open_one in await ctx.close.opportunities_of(ctx.lead_id, status_type="active"):
                same = open_one.get("pipeline_id") == choice.pipeline_id
                if same or open_one.get("status_id") in choice.active_statuses:
                    return Done(
                        skipped=f"the lead has an active opportunity in {choice.pipeline_name!r}",
                        detail={"opportunity": open_one.get("id")},
                    )
        made = await ctx.close.create_opportunity(body)
        detail = {"pipeline": choice.pipeline_name, "status": made.get("status_label"), "rule": how}
        if "value" in body:
            detail["value"] = made.get("value_formatted") or body["value"]
        return Done(close_id=str(made.get("id") or "") or None, detail=detail)

    async def find(self, ctx: StepContext) -> Done | None:
        try:
            body, choice, _ = await self._body(ctx)
        except Skip:
            return None
        found = await ctx.close.opportunities_of(ctx.lead_id, since=iso_utc(self.since(ctx)))
        for made in await self.made_since(ctx, found):
            if same_fields(body, made, ("pipeline_id", "status_id", "value", "note", "user_id")):
                return Done(close_id=str(made.get("id")), detail={"pipeline": choice.pipeline_name})
        return None


class ActivityStep(FollowupStep):
    """The submission as a custom activity, its fields mapped from the canonical record. With a
    ``marker_field`` the activity carries the submission id, and one found by it after a lost
    answer is this submission's; without, one made since the step began with the same mapped
    values and claimed by no other submission of the lead is taken for it."""

    name = "activity"

    def wanted(self, ctx: StepContext) -> bool:
        plan = self.plan(ctx)
        if plan is None or plan.activity is None or plan.spec.activity is None:
            return False
        return plan.runs(plan.spec.activity.on_match, created=made_here(ctx))

    async def _body(self, ctx: StepContext) -> dict[str, Any]:
        plan = self.plan(ctx)
        assert plan is not None and plan.activity is not None
        return activity_body(
            plan.activity,
            ctx.mapped.record,
            lead_id=ctx.lead_id,
            contact_id=await self.contact_id(ctx),
            submission_id=ctx.attempt.record.id,
        )

    async def run(self, ctx: StepContext) -> Done:
        made = await ctx.close.create_custom_activity(await self._body(ctx))
        plan = self.plan(ctx)
        detail = {"type": plan.activity.type_name} if plan and plan.activity else {}
        return Done(close_id=str(made.get("id") or "") or None, detail=detail)

    async def find(self, ctx: StepContext) -> Done | None:
        plan = self.plan(ctx)
        if plan is None or plan.activity is None:
            return None
        found = await ctx.close.custom_activities_of(
            ctx.lead_id, plan.activity.type_id, since=iso_utc(self.since(ctx))
        )
        detail = {"type": plan.activity.type_name}
        if plan.activity.marker is not None:
            key, submission = f"custom.{plan.activity.marker.id}", ctx.attempt.record.id
            for made in found:
                if made.get(key) == submission:
                    return Done(close_id=str(made.get("id")), detail=detail)
            return None
        body = await self._body(ctx)
        keys = [key for key in body if key.startswith("custom.")]
        for made in await self.made_since(ctx, found):
            if same_fields(body, made, keys):
                return Done(close_id=str(made.get("id")), detail=detail)
        return None


def all_steps(followups: Followups | None) -> tuple[Step, ...]:
    """The steps after the lead, in the order they run (without follow-ups: contact, note)."""
    if followups is None:
        return STEPS
    fu = followups
    return (
        OwnerStep(fu),
        UpdateStep(fu),
        ContactDetailsStep(fu),
        ContactStep(),
        TaskStep(fu),
        NoteStep(fu.clock_skew),
        ActivityStep(fu),
        OpportunityStep(fu),
        SequenceStep(fu),
    )
