"""Round-robin owners across worker processes: 300 new people through 3 ``lead-intake worker``
processes (real Redis, the emulator as a process, the whole follow-up configured) over a group
of 4 active reps and a deactivated one. Every rep owns 75 leads, the deactivated one none; each
lead has one task, assigned to its owner, and each contact one subscription. People who submit
again keep their owner, take no turn and are not subscribed twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from service.keys import Keys
from service.queue.records import FINAL_STATES, Record
from tests.reliability.harness import PREFIX, Stack
from tests.team import GONE, ORG, REPS, followup_source

pytestmark = pytest.mark.usefixtures("captured_logs")

PEOPLE = 300
RETURNING = 20


def body(n: int, message: str) -> dict[str, Any]:
    return {
        "email": f"rr{n}@buyer.example",
        "name": f"Robin Buyer{n}",
        "company": f"Robin {n} GmbH",
        "message": message,
        "plan": "Team",
        "budget": 500,
    }


async def post_all(base: str, bodies: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    async with aiohttp.ClientSession() as session:
        semaphore = asyncio.Semaphore(16)

        async def one(payload: dict[str, Any]) -> str:
            async with semaphore, session.post(f"{base}/hooks/web", json=payload) as response:
                assert response.status == 202, await response.text()
                return str((await response.json())["id"])

        ids = list(await asyncio.gather(*(one(b) for b in bodies)))
    return ids


async def settled(redis: Redis, ids: list[str], within: float) -> list[Record]:
    keys = Keys(PREFIX)
    deadline = time.monotonic() + within
    while True:
        pipe = redis.pipeline(transaction=False)
        for sub_id in ids:
            pipe.hgetall(keys.sub(sub_id))
        records = [Record.from_hash(raw) for raw in await pipe.execute() if raw]
        if len(records) == len(ids) and all(r.state in FINAL_STATES for r in records):
            return records
        assert time.monotonic() < deadline, Counter(r.state for r in records)
        await asyncio.sleep(0.25)


@pytest.mark.timeout(150)
async def test_300_people_over_3_workers_and_4_reps_get_75_leads_each(tmp_path: Path) -> None:
    source = followup_source(sequence={"name": "Inbound nurture", "on_match": True})
    async with Stack(
        tmp_path,
        receivers=1,
        workers=3,
        sources={"sources": {"web": source}},
        org=ORG,
        worker_concurrency=8,
        read_block_ms=100,
    ) as stack:
        base = stack.receiver_url(stack.receivers[0])
        redis = Redis.from_url(stack.redis.url, decode_responses=True)
        try:
            ids = await post_all(base, [body(n, "first") for n in range(PEOPLE)])
            created = await settled(redis, ids, 100)
            again = await post_all(base, [body(n, "again") for n in range(RETURNING)])
            returned = await settled(redis, again, 40)
        finally:
            await redis.aclose()
        emulator = stack.emulator
        config = await emulator.config()
        users = {u["email"]: u["id"] for u in config["users"]}
        field = next(f["id"] for f in config["lead_custom_fields"] if f["name"] == "Lead Owner")
        leads = {lead["id"]: lead for lead in await emulator.leads()}
        tasks = await emulator.objects("tasks")
        subscriptions = await emulator.objects("subscriptions")
        crashes = stack.crashes()
    assert not crashes, crashes
    assert Counter(r.state for r in created) == {"created": PEOPLE}
    assert len(leads) == PEOPLE
    owners = Counter(lead.get(f"custom.{field}") for lead in leads.values())
    assert owners == {users[email]: PEOPLE // len(REPS) for email in REPS}
    assert users[GONE] not in owners
    tasks_of = Counter(t["lead_id"] for t in tasks)
    assert set(tasks_of) == set(leads) and set(tasks_of.values()) == {1}
    for task in tasks:
        assert task["assigned_to"] == leads[task["lead_id"]][f"custom.{field}"]
    contacts = Counter(s["contact_id"] for s in subscriptions)
    assert len(contacts) == PEOPLE and set(contacts.values()) == {1}
    # The returning people: the same lead and owner, no second subscription, no turn taken.
    first_owner = {r.lead_id: r.progress.steps["owner"].close_id for r in created}
    assert Counter(r.state for r in returned) == {"attached": RETURNING}
    for record in returned:
        steps = record.progress.steps
        assert steps["owner"].close_id == first_owner[record.lead_id]
        assert steps["owner"].detail["how"] == "the lead's owner is kept"
        assert steps["sequence"].state == "skipped"
        assert "already subscribed" in (steps["sequence"].reason or "")
    turns = [int(r.progress.steps["owner"].detail["turn"]) for r in created]
    assert sorted(turns) == list(range(1, PEOPLE + 1))  # one turn per new lead, none twice
    print(json.dumps({"owners": dict(Counter(owners.values())), "tasks": len(tasks)}))
