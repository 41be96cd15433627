"""The follow-ups after the lead, in one worker against the emulator: the owner in the create
body, round-robin fair and deactivated reps skipped, a task for the owner, the sequence (and
why it is skipped), the opportunity and the custom activity, each recorded with its Close id."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from close_emulator.sales import accounts
from close_emulator.sequences import create_subscription
from service.close.client import CloseClient
from service.metrics import Metrics
from service.queue import Queue
from tests.conftest import emulator_state, enqueue, running_worker, sources_from, wait_for_record
from tests.team import GONE, MANAGER, REPS, followup_source, use_team, user_id


def person(n: int, **more: Any) -> dict[str, Any]:
    return {
        "email": f"p{n}@buyer.example",
        "name": f"Pat Buyer{n}",
        "company": f"Buyer {n} Inc",
        "message": f"hello {n}",
        "page": "https://example.com/pricing",
        "utm_campaign": "spring",
        "plan": "Pro",
        "budget": "1,200.50",
        **more,
    }


async def test_new_leads_get_their_owner_task_sequence_opportunity_and_activity(
    queue: Queue, make_settings: Any, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    use_team(state)
    sources = sources_from({"sources": {"web": followup_source()}})
    metrics = Metrics()
    ids = [await enqueue(queue, person(n), source="web") for n in range(8)]
    async with running_worker(make_settings(), sources, redis, metrics=metrics):
        records = [await wait_for_record(queue, sub_id, within=20) for sub_id in ids]
    owner_field = next(f.id for f in state.options.lead_custom_fields if f.name == "Lead Owner")
    owners = Counter(state.leads[r.lead_id or ""][f"custom.{owner_field}"] for r in records)
    reps = {user_id(state, email) for email in REPS}
    assert set(owners) == reps and set(owners.values()) == {2}  # 8 leads over 4 reps
    assert user_id(state, GONE) not in owners  # deactivated: skipped
    for record in records:
        lead_id = record.lead_id or ""
        owner = state.leads[lead_id][f"custom.{owner_field}"]
        steps = record.progress.steps
        assert steps["owner"].state == "done" and steps["owner"].close_id == owner
        [task] = [t for t in state.tasks.values() if t["lead_id"] == lead_id]
        assert steps["task"].close_id == task["id"] and task["assigned_to"] == owner
        assert task["text"].startswith("Call Pat Buyer") and not task["is_dateless"]
        [sub] = [s for s in state.subscriptions.values() if s["lead_id"] == lead_id]
        assert steps["sequence"].close_id == sub["id"]
        assert sub["sender_email"] == next(u.email for u in state.options.users if u.id == owner)
        [deal] = [o for o in state.opportunities.values() if o["lead_id"] == lead_id]
        assert steps["opportunity"].close_id == deal["id"]
        assert deal["value"] == 120050 and deal["value_period"] == "monthly"
        assert deal["user_id"] == owner and deal["status_label"] == "Demo requested"
        [activity] = [a for a in state.custom_activities.values() if a["lead_id"] == lead_id]
        assert steps["activity"].close_id == activity["id"]
        kind = state.options.custom_activity_types[0]
        values = {f.name: activity.get(f"custom.{f.id}") for f in kind.fields}
        assert values == {
            "Source": "web",
            "Page": "https://example.com/pricing",
            "UTM Campaign": "spring",
            "Message": state.leads[lead_id]["description"],
            "Plan": "Pro",
            "Submission ID": record.id,
        }
        assert steps["note"].state == "done"
    # The owner went into the create body: no lead update was sent.
    assert not [r for r in state.requests if r.method == "PUT"]
    assert metrics.speed_to_lead.labels("web")._sum.get() > 0
    assigned = {
        s.labels["owner"]: s.value
        for m in metrics.registry.collect()
        if m.name == "intake_owner_assignments"
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert sorted(assigned.values()) == [2.0, 2.0, 2.0, 2.0]


async def test_a_rule_chooses_the_owner_and_a_returning_person_keeps_theirs(
    queue: Queue, make_settings: Any, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    use_team(state)
    source = followup_source(sequence={"name": "Inbound nurture", "on_match": True})
    sources = sources_from({"sources": {"web": source}})
    async with running_worker(make_settings(), sources, redis):
        german = await wait_for_record(
            queue, await enqueue(queue, person(1, country="DE"), source="web")
        )
        first = await wait_for_record(queue, await enqueue(queue, person(2), source="web"))
        again = await wait_for_record(
            queue,
            await enqueue(queue, person(2, message="still interested"), source="web"),
            ("attached",),
        )
    assert german.progress.steps["owner"].close_id == user_id(state, MANAGER)
    assert german.progress.steps["owner"].detail["how"] == "rules[0]"
    assert again.lead_id == first.lead_id
    owner = again.progress.steps["owner"]
    assert owner.close_id == first.progress.steps["owner"].close_id
    assert owner.detail["how"] == "the lead's owner is kept"
    sequence = again.progress.steps["sequence"]
    assert sequence.state == "skipped" and "already subscribed" in (sequence.reason or "")
    subs = [s for s in state.subscriptions.values() if s["lead_id"] == first.lead_id]
    assert len(subs) == 1
    # On a match the task, opportunity and activity do not run (on_match: false by default).
    assert "task" not in again.progress.steps and "opportunity" not in again.progress.steps


async def test_an_unsubscribed_email_skips_the_sequence_with_the_reason(
    queue: Queue, make_settings: Any, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    use_team(state)
    state.unsubscribed.add("p7@buyer.example")
    sources = sources_from({"sources": {"web": followup_source()}})
    async with running_worker(make_settings(), sources, redis):
        record = await wait_for_record(queue, await enqueue(queue, person(7), source="web"))
    mark = record.progress.steps["sequence"]
    assert mark.state == "skipped" and mark.reason == "the email address is unsubscribed"
    assert not state.subscriptions
    assert record.progress.steps["task"].state == "done"
    public = record.to_public()["steps"]["sequence"]
    assert public["reason"] == "the email address is unsubscribed"


def after_the_first_look(
    monkeypatch: pytest.MonkeyPatch, then: Callable[[str, str], None]
) -> list[str]:
    """The step's look at the contact's subscriptions, with ``then(contact id, sequence id)``
    run right after the first one (what happens in Close before the step's POST); the
    contacts looked at, one per look."""
    looked = CloseClient.subscriptions_of
    looks: list[str] = []

    async def look(self: CloseClient, contact_id: str, sequence_id: str) -> list[dict[str, Any]]:
        found = await looked(self, contact_id, sequence_id)
        looks.append(contact_id)
        if len(looks) == 1:
            then(contact_id, sequence_id)
        return found

    monkeypatch.setattr(CloseClient, "subscriptions_of", look)
    return looks


async def test_a_subscription_made_between_the_look_and_the_send_skips_the_sequence(
    queue: Queue,
    make_settings: Any,
    redis: Redis,
    emulator: TestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Someone else (a rep, a workflow) subscribes the contact right after the step looked:
    # Close refuses the second subscription, and the step ends skipped with the one there is.
    state = emulator_state(emulator)
    use_team(state)
    sources = sources_from({"sources": {"web": followup_source()}})
    outside: list[dict[str, Any]] = []

    def someone_subscribes(contact_id: str, sequence_id: str) -> None:
        account, user = accounts(state.options)[0]
        body = {
            "sequence_id": sequence_id,
            "contact_id": contact_id,
            "contact_email": state.contacts[contact_id]["emails"][0]["email"],
            "sender_account_id": account.id,
            "sender_name": "A rep",
            "sender_email": account.email or user.email,
        }
        outside.append(create_subscription(body, state))

    looks = after_the_first_look(monkeypatch, someone_subscribes)
    async with running_worker(make_settings(), sources, redis):
        record = await wait_for_record(queue, await enqueue(queue, person(3), source="web"))
    mark = record.progress.steps["sequence"]
    assert mark.state == "skipped" and "already subscribed" in (mark.reason or "")
    assert mark.detail == {"subscription": outside[0]["id"]}
    assert [s["id"] for s in state.subscriptions.values()] == [outside[0]["id"]]
    refused = [
        r for r in state.requests if r.method == "POST" and "sequence_subscription" in r.path
    ]
    assert len(refused) == 1 and len(looks) == 2  # the one Close refused, then a second look


async def test_a_subscription_refused_for_another_reason_stays_the_steps_failure(
    queue: Queue,
    make_settings: Any,
    redis: Redis,
    emulator: TestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The email is unsubscribed right after the look, and Close refuses the subscription for
    # that: no subscription is found on the second look, so Close's answer is the failure.
    state = emulator_state(emulator)
    use_team(state)
    state.configure(unsubscribed_subscriptions="reject")
    sources = sources_from({"sources": {"web": followup_source()}})
    looks = after_the_first_look(
        monkeypatch, lambda _contact, _sequence: state.unsubscribed.add("p4@buyer.example")
    )
    async with running_worker(make_settings(), sources, redis):
        record = await wait_for_record(
            queue, await enqueue(queue, person(4), source="web"), ("attached", "created")
        )
    mark = record.progress.steps["sequence"]
    assert mark.state == "failed" and mark.error is not None
    assert "This email address is unsubscribed." in str(mark.error["close_response"])
    assert len(looks) == 2 and not state.subscriptions  # looked again, nothing made
