"""The chaos run's books of the follow-ups: after workers were SIGKILLed and Close answered
5xx after applying, every created lead has its owner; every task, opportunity and custom
activity in Close is the one a submission's record names (none made twice by a resend, none
claimed by two submissions); a person has at most one subscription; every re-submission's visit
reached the lead once (no update lost), with at most one applied PUT per submission (none
applied twice)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from service.queue.records import Record

TABLES = {"task": "tasks", "opportunity": "opportunities", "activity": "activities"}


@dataclass
class Submission:
    """What the books need of one accepted submission."""

    record: Record
    email: str | None
    visit: str | None
    source: str


def _field(config: Mapping[str, Any], name: str) -> str:
    return "custom." + next(f["id"] for f in config["lead_custom_fields"] if f["name"] == name)


def check_followups(
    submissions: Iterable[Submission],
    leads: list[dict[str, Any]],
    objects: Mapping[str, list[dict[str, Any]]],
    requests: list[dict[str, Any]],
    config: Mapping[str, Any],
    reps: Iterable[str],
    follow: Callable[[str], str] = str,
) -> tuple[list[str], dict[str, int]]:
    """The failures found, and counts for the run's table. ``follow`` gives the lead a lead
    id is now (the one Close merged it into, when it was merged)."""
    fail: list[str] = []
    subs = [s for s in submissions if s.record.lead_id]
    owner_key, visits_key = _field(config, "Lead Owner"), _field(config, "Visits")
    rep_ids = {u["id"] for u in config["users"] if u["email"] in set(reps)}
    unowned = [lead["id"] for lead in leads if lead.get(owner_key) not in rep_ids]
    if unowned:
        fail.append(f"{len(unowned)} leads without an owner of the pool: {unowned[:5]}")
    for step, table in TABLES.items():
        named = Counter(
            s.record.progress.steps[step].close_id
            for s in subs
            if step in s.record.progress.steps and s.record.progress.steps[step].state == "done"
        )
        made = {obj["id"] for obj in objects[table]}
        twice = [i for i, count in named.items() if count > 1]
        orphans = sorted(made - set(named))
        missing = sorted(set(named) - made)
        if twice or orphans or missing:
            fail.append(
                f"{table}: {len(orphans)} made by no submission (sent twice?) {orphans[:3]}, "
                f"{len(twice)} claimed twice {twice[:3]}, {len(missing)} named but missing"
            )
    per_contact = Counter(s["contact_id"] for s in objects["subscriptions"])
    doubled = [c for c, n in per_contact.items() if n > 1]
    if doubled:
        fail.append(f"{len(doubled)} contacts subscribed more than once: {doubled[:3]}")
    unfinished = [
        (s.record, name, mark)
        for s in subs
        for name, mark in s.record.progress.steps.items()
        if mark.state not in ("done", "skipped")
    ]
    if unfinished:
        fail.append(f"follow-up steps not done: {dict(Counter(n for _, n, _ in unfinished))}")
        fail.extend(
            f"    {record.id} {record.state} on {record.lead_id}: {name} {mark}; "
            f"history {record.history[-6:]}"
            for record, name, mark in unfinished[:3]
        )
    by_lead: dict[str, list[Submission]] = defaultdict(list)
    for s in subs:
        by_lead[follow(s.record.lead_id or "")].append(s)
    puts = Counter(
        follow(r["path"].split("/")[4])
        for r in requests
        if r["method"] == "PUT" and r["path"].startswith("/api/v1/lead/") and r["applied"]
    )
    for lead in leads:
        mine = by_lead.get(lead["id"], [])
        # Created or attached: the visit is on the lead. A create whose answer was lost, of a
        # submission that then found the lead: its visit is there if that create made it.
        wanted = {s.visit for s in mine if s.record.state in ("created", "attached") and s.visit}
        allowed = wanted | {s.visit for s in mine if s.record.progress.create_started_at}
        have = set(lead.get(visits_key) or [])
        if not wanted <= have <= allowed:
            fail.append(
                f"lead {lead['id']}: visits {sorted(have)}, submitted {sorted(wanted)} "
                f"(and maybe {sorted(map(str, allowed - wanted))})"
            )
        attached = sum(1 for s in mine if s.record.state == "attached")
        if puts[lead["id"]] > attached:
            fail.append(f"lead {lead['id']}: {puts[lead['id']]} PUTs for {attached} updates")
    counts = {
        "tasks": len(objects["tasks"]),
        "opportunities": len(objects["opportunities"]),
        "custom activities": len(objects["activities"]),
        "subscriptions": len(objects["subscriptions"]),
        "lead updates applied": sum(puts.values()),
    }
    return fail, counts
