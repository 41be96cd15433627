"""Re-submissions update the matched lead as each field's policy says, in one PUT with only
what changes (none when nothing does); a new phone goes to the matched contact; a status rule
moves the lead; an opportunity is made once while one is active, again after it is won or lost."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from close_emulator import EmulatorState
from service.queue import Queue, Record
from tests.conftest import emulator_state, enqueue, running_worker, sources_from, wait_for_record
from tests.team import use_team

UPDATE = {
    "default": "fill_if_empty",
    "fields": {
        "name": "overwrite",
        "description": "never",
        "Plan": "overwrite",
        "Interests": "append",
    },
    "status": [{"from": ["Bad Fit"], "to": "Qualified"}],
}
SOURCE: dict[str, Any] = {
    "kind": "webhook",
    "default_region": "US",
    "extract": {
        "email": "body.email",
        "phone": "body.phone",
        "full_name": "body.name",
        "company": "body.company",
        "website": "body.website",
        "message": "body.message",
        "extra.plan": "body.plan",
        "extra.interest": "body.interest",
        "extra.external_id": "body.external_id",
    },
    "lead": {
        "custom": {
            "Plan": "extra.plan",
            "Interests": "extra.interest",
            "External ID": "extra.external_id",
        }
    },
    "followup": {"update": UPDATE},
}


def field_id(state: EmulatorState, name: str) -> str:
    return "custom." + next(f.id for f in state.options.lead_custom_fields if f.name == name)


def puts(state: EmulatorState, path: str = "/api/v1/lead/") -> list[Any]:
    return [r for r in state.requests if r.method == "PUT" and r.path.startswith(path)]


async def submit(queue: Queue, body: dict[str, Any], state: str = "attached") -> Record:
    return await wait_for_record(queue, await enqueue(queue, body, source="web"), (state,))


async def test_each_policy_changes_exactly_its_fields_in_one_put_and_none_when_equal(
    queue: Queue, make_settings: Any, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    use_team(state)
    sources = sources_from({"sources": {"web": SOURCE}})
    first = {
        "email": "kim@old.example",
        "name": "Kim Old",
        "company": "Old Name Ltd",
        "message": "first message",
        "plan": "Team",
        "interest": "Product",
        "external_id": "ext-1",
    }
    again = {
        **first,
        "company": "New Name Ltd",  # name: overwrite
        "message": "second message",  # description: never
        "website": "https://new.example",  # url: fill_if_empty, and it is empty
        "plan": "Pro",  # overwrite
        "interest": "Pricing",  # append
        "external_id": "ext-2",  # fill_if_empty, but it holds ext-1
    }
    async with running_worker(make_settings(), sources, redis):
        created = await submit(queue, first, "created")
        lead_id = created.lead_id or ""
        state.leads[lead_id]["status_id"] = next(
            s.id for s in state.options.lead_statuses if s.label == "Bad Fit"
        )
        updated = await submit(queue, again)
        unchanged = await submit(queue, again)
    lead = state.leads[lead_id]
    assert lead["name"] == "New Name Ltd"
    assert lead["description"] == "first message"
    assert lead["url"] == "https://new.example"
    assert lead[field_id(state, "Plan")] == "Pro"
    assert lead[field_id(state, "Interests")] == ["Product", "Pricing"]
    assert lead[field_id(state, "External ID")] == "ext-1"
    assert lead["status_label"] == "Qualified"
    [put] = puts(state)
    assert put.path == f"/api/v1/lead/{lead_id}/"
    changes = updated.progress.steps["update"].detail["changes"]
    assert set(changes) == {
        "name",
        "url",
        field_id(state, "Plan"),
        field_id(state, "Interests"),
        "status_id",
    }
    assert changes["name"] == {"before": "Old Name Ltd", "after": "New Name Ltd"}
    assert changes[field_id(state, "Interests")]["after"] == ["Product", "Pricing"]
    mark = unchanged.progress.steps["update"]
    assert mark.state == "skipped" and mark.reason == "nothing to change on the matched lead"


async def test_a_new_phone_goes_to_the_matched_contact_not_a_second_contact(
    queue: Queue, make_settings: Any, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    use_team(state)
    sources = sources_from({"sources": {"web": SOURCE}})
    async with running_worker(make_settings(), sources, redis):
        created = await submit(
            queue, {"email": "lu@x.example", "name": "Lu", "phone": "+1 415 555 0101"}, "created"
        )
        again = await submit(
            queue, {"email": "lu@x.example", "name": "Lu", "phone": "+1 415 555 0199"}
        )
    [contact] = state.leads[created.lead_id or ""]["contacts"]
    assert [p["phone"] for p in contact["phones"]] == ["+14155550101", "+14155550199"]
    mark = again.progress.steps["contact_details"]
    assert mark.state == "done" and mark.close_id == contact["id"]
    assert mark.detail["changes"]["phones"]["after"] == ["+14155550101", "+14155550199"]
    assert len(puts(state, "/api/v1/contact/")) == 1


async def test_an_opportunity_once_while_active_and_again_after_won_or_lost(
    queue: Queue, make_settings: Any, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    use_team(state)
    source = {
        **SOURCE,
        "followup": {
            "on_match": True,
            "opportunity": {
                "pipeline": "Sales",
                "status": "Demo requested",
                "user": "rep1@team.example",
            },
        },
    }
    sources = sources_from({"sources": {"web": source}})
    body = {"email": "mo@x.example", "name": "Mo"}
    async with running_worker(make_settings(), sources, redis):
        first = await submit(queue, body, "created")
        second = await submit(queue, body)
        lead_id = first.lead_id or ""
        [deal] = [o for o in state.opportunities.values() if o["lead_id"] == lead_id]
        won = next(s for p in state.options.pipelines for s in p.statuses if s.label == "Won")
        deal.update(status_id=won.id, status_type="won", status_label="Won")
        third = await submit(queue, body)
        fourth = await submit(queue, body)
    assert first.progress.steps["opportunity"].state == "done"
    mark = second.progress.steps["opportunity"]
    assert mark.state == "skipped" and "active opportunity in 'Sales'" in (mark.reason or "")
    assert third.progress.steps["opportunity"].state == "done"
    assert fourth.progress.steps["opportunity"].state == "skipped"
    assert len([o for o in state.opportunities.values() if o["lead_id"] == lead_id]) == 2
