"""The follow-ups in ``check-config`` (every name resolved against Close, every problem with
its key path) and in ``lead-intake map`` (what the follow-up steps would send for a payload:
for a new lead, or for an existing one read from Close or given as a file: the exact PUT body,
the task, the subscription, the opportunity and the custom activity).

The preview sends nothing and reads no round-robin counter: a pool's owner is shown as the
pool and its turn order, and the bodies carry ``<owner>`` where that owner's id would go.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.close.directory import Directory
from service.config.sources import Sources
from service.errors import ConfigError, ConfigIssue
from service.mapping import CloseSchema, MappedLead, Mapper
from service.worker.bodies import (
    Skip,
    activity_body,
    contact_update,
    lead_update,
    opportunity_body,
    person_contact,
    subscription_body,
    task_body,
)
from service.worker.followups import resolve_all
from service.worker.owner import choose
from service.worker.plan import Plan

OWNER_PLACEHOLDER = "<owner>"


def check_followups(
    sources: Sources, schema: CloseSchema | None, directory: Directory, file: str
) -> list[ConfigIssue]:
    """Every problem of every source's follow-ups against the organisation."""
    mappers: dict[str, Mapper] = {}
    for name, source in sources.items():
        try:
            mappers[name] = Mapper(source, source=name, presets=sources.presets, schema=schema)
        except ConfigError:
            continue  # its mapping problems are reported already
    _, issues = resolve_all(sources, mappers, directory, schema)
    return [ConfigIssue(i.path, i.message, i.file or file) for i in issues]


def _who(directory: Directory, user_id: str | None) -> str | None:
    user = directory.user(user_id) if user_id else None
    return f"{user.email} ({user.id})" if user is not None else user_id


def _owner(
    plan: Plan, mapped: MappedLead, lead: Mapping[str, Any] | None, directory: Directory
) -> tuple[dict[str, Any], str | None, bool]:
    """The owner section of the preview, the id the bodies use, and whether a match writes it."""
    owner = plan.owner
    assert owner is not None
    current = lead.get(owner.field_key) if lead is not None else None
    if lead is not None and owner.on_match == "keep":
        return {"kept": _who(directory, current) or "none"}, current, False
    if lead is not None and current and owner.on_match == "fill":
        return {"kept": _who(directory, current)}, current, False
    choice = choose(owner, mapped.record)
    shown: dict[str, Any] = {"field": owner.field_name, "how": choice.how}
    if choice.pool is not None:
        shown["pool"] = choice.pool
        shown["in_turn"] = [_who(directory, u) for u in dict.fromkeys(choice.order)]
        left = owner.pools[choice.pool].left_out
        if left:
            shown["left_out"] = {_who(directory, u): why for u, why in left.items()}
        return shown, OWNER_PLACEHOLDER, lead is not None
    shown["user"] = _who(directory, choice.user)
    return shown, choice.user, lead is not None and choice.user is not None


def _on(plan: Plan, name: str, created: bool) -> bool:
    """Whether the part ``name`` runs for a new lead (``created``) or a match."""
    spec = getattr(plan.spec, name)
    return spec is not None and plan.runs(spec.on_match, created=created)


def _part(build: Any) -> Any:
    try:
        return build()
    except Skip as skip:
        return {"skipped": str(skip)}


def preview_followups(
    plan: Plan,
    mapped: MappedLead,
    directory: Directory,
    *,
    lead: Mapping[str, Any] | None = None,
    received_at: float,
) -> dict[str, Any]:
    """What the follow-up steps would send (``lead``: as for a match to that lead)."""
    created = lead is None
    lead_id = str(lead.get("id")) if lead is not None else "<the new lead>"
    contact = person_contact(lead, mapped.identity) if lead is not None else None
    contact_id = str(contact["id"]) if contact is not None else None
    if created:
        contact_id = "<the new contact>"
    out: dict[str, Any] = {"as": "a new lead" if created else f"a match to {lead_id}"}
    owner_id: str | None = None
    write = False
    if plan.owner is not None:
        out["owner"], owner_id, write = _owner(plan, mapped, lead, directory)
        if created and owner_id is not None:
            out["owner"]["in_the_create_body"] = {plan.owner.field_key: owner_id}
    if lead is not None and (plan.update is not None or write):
        key = plan.owner.field_key if plan.owner is not None else ""
        change = lead_update(
            plan.update, mapped.lead, lead, owner=(key, owner_id) if write and owner_id else None
        )
        out["update"] = {"put": change.body, "changes": change.changes} if change.body else None
        if plan.update is not None and plan.update.contact == "add" and contact is not None:
            contact_change = contact_update(mapped.contact, contact)
            out["contact"] = {"put": contact_change.body} if contact_change.body else None
    record = mapped.record
    if plan.task is not None and _on(plan, "task", created):
        task = plan.task
        out["task"] = _part(
            lambda: task_body(
                task,
                record,
                lead_id=lead_id,
                owner=owner_id,
                contact_id=contact_id,
                received_at=received_at,
            )
        )
    if plan.activity is not None and _on(plan, "activity", created):
        out["activity"] = activity_body(
            plan.activity,
            record,
            lead_id=lead_id,
            contact_id=contact_id,
            submission_id=str(record.get("submission_id") or "<the submission id>"),
        )
    if plan.opportunity is not None and _on(plan, "opportunity", created):
        deal = plan.opportunity
        out["opportunity"] = _part(
            lambda: opportunity_body(
                deal, record, lead_id=lead_id, owner=owner_id, contact_id=contact_id
            )[0]
        )
        if deal.policy == "if_none_active":
            out["opportunity_policy"] = "only when the lead has no active opportunity in it"
    if plan.sequence is not None and _on(plan, "sequence", created):
        sender = plan.sequence.sender or owner_id
        accounts = directory.accounts_of(sender) if sender and sender != OWNER_PLACEHOLDER else ()
        target = contact or {"id": contact_id}
        email = mapped.identity.email or "<the contact's email>"
        if accounts:
            out["sequence"] = subscription_body(
                plan.sequence.sequence_id, target, email, accounts[0]
            )
        else:
            out["sequence"] = {
                "sequence_id": plan.sequence.sequence_id,
                "contact_id": target["id"],
                "contact_email": email,
                "sender": "the owner's connected email account" if sender else "no sender",
            }
    return out
