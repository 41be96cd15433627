"""The follow-ups exactly once: an answer lost after Close applied a step is found, not sent
again; a step Close refuses is marked failed with Close's answer, the lead stands, and a replay
runs only what did not happen."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from service.queue import Queue
from tests.conftest import (
    emulator_state,
    enqueue,
    running_worker,
    sources_from,
    wait_for_record,
    wait_until,
)
from tests.team import followup_source, use_team
from tests.worker.test_followups import person

PATHS = {
    "task": ("POST", "/api/v1/task/", "tasks"),
    "sequence": ("POST", "/api/v1/sequence_subscription/", "subscriptions"),
    "opportunity": ("POST", "/api/v1/opportunity/", "opportunities"),
    "activity": ("POST", "/api/v1/activity/custom/", "custom_activities"),
}


@pytest.mark.parametrize("step", sorted(PATHS))
async def test_a_lost_answer_is_found_and_not_sent_again(
    step: str, queue: Queue, make_settings: Any, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    use_team(state)
    method, path, table = PATHS[step]
    state.add_fault(method=method, path=path, status=502, after_apply=True)
    sources = sources_from({"sources": {"web": followup_source()}})
    async with running_worker(make_settings(), sources, redis):
        record = await wait_for_record(queue, await enqueue(queue, person(1), source="web"))
    made = list(getattr(state, table).values())
    assert len(made) == 1
    mark = record.progress.steps[step]
    assert mark.state == "done" and mark.close_id == made[0]["id"]
    assert mark.detail["how"] == "found after a lost answer"
    assert sum(1 for r in state.requests if (r.method, r.path) == (method, path)) == 1
    assert record.attempts == 2


async def test_a_refused_step_fails_alone_and_a_replay_runs_only_it(
    queue: Queue, make_settings: Any, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    use_team(state)
    body = {"errors": [], "field-errors": {"assigned_to": "Object does not exist."}}
    state.add_fault(method="POST", path="/api/v1/task/", status=400, body=body)
    sources = sources_from({"sources": {"web": followup_source()}})
    async with running_worker(make_settings(), sources, redis):
        record = await wait_for_record(queue, await enqueue(queue, person(2), source="web"))
        assert record.state == "created"
        task = record.progress.steps["task"]
        assert task.state == "failed" and task.error["status"] == 400
        assert task.error["close_response"] == body
        assert record.history[-1]["detail"]["failed_steps"] == ["task"]
        for name in ("owner", "note", "activity", "opportunity", "sequence"):
            assert record.progress.steps[name].state == "done", name
        before = len(state.requests)
        assert await queue.records.replay(record.id) == "replayed"
        again = await wait_for_record(queue, record.id, within=15)
    assert again.progress.steps["task"].state == "done"
    assert len(state.tasks) == 1 and len(state.subscriptions) == 1
    assert len(state.opportunities) == 1 and len(state.custom_activities) == 1
    assert len(state.leads) == 1 and len(state.notes) == 1
    sent = [(r.method, r.path) for r in state.requests[before:] if r.method != "GET"]
    assert sent == [("POST", "/api/v1/task/")]


async def test_nobody_available_gives_the_default_owner_then_none(
    queue: Queue, make_settings: Any, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    use_team(state)
    owner = {
        "field": "Lead Owner",
        "pool": "weekend",
        "pools": {"weekend": {"users": ["gone@team.example", "rep1@team.example"]}},
        "absent": ["rep1@team.example"],
        "default": "manager@team.example",
    }
    nobody = {**owner, "default": None}
    sources = sources_from(
        {
            "sources": {
                "web": followup_source(owner=owner, sequence=None),
                "late": followup_source(owner=nobody, sequence=None),
            }
        }
    )
    async with running_worker(make_settings(), sources, redis):
        first = await wait_for_record(queue, await enqueue(queue, person(3), source="web"))
        second = await wait_for_record(queue, await enqueue(queue, person(4), source="late"))
    manager = next(u.id for u in state.options.users if u.email == "manager@team.example")
    mark = first.progress.steps["owner"]
    assert mark.close_id == manager and "nobody available" in mark.detail["how"]
    unowned = second.progress.steps["owner"]
    assert unowned.state == "skipped" and "no default owner" in (unowned.reason or "")
    lead = state.leads[second.lead_id or ""]
    assert not [k for k in lead if k.startswith("custom.") and lead[k] == manager]
    task = next(t for t in state.tasks.values() if t["lead_id"] == second.lead_id)
    assert task["assigned_to"] == state.options.user_id  # Close's default: the key's user


def marker_key(state: Any) -> str:
    kind = state.options.custom_activity_types[0]
    return "custom." + next(f.id for f in kind.fields if f.name == "Submission ID")


async def test_a_worker_dead_after_the_activity_post_leaves_one_activity_with_the_marker(
    queue: Queue, make_settings: Any, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    use_team(state)
    path = "/api/v1/activity/custom/"
    # Applied, then no answer: the worker is stopped with the activity step started.
    state.add_fault(method="POST", path=path, after_apply=True, hang=True, hang_seconds=30)
    sources = sources_from({"sources": {"web": followup_source()}})
    crashing = make_settings(shutdown_grace_seconds=0, visibility_timeout_seconds=1.0)
    async with running_worker(crashing, sources, redis, consumer="doomed"):
        sub_id = await enqueue(queue, person(7), source="web")
        await wait_until(lambda: state.custom_activities)
    record = await queue.records.get(sub_id)
    assert record is not None and record.progress.steps["activity"].state == "started"
    state.wake_hangs()
    async with running_worker(make_settings(visibility_timeout_seconds=1.0), sources, redis):
        record = await wait_for_record(queue, sub_id, within=15)
    made = list(state.custom_activities.values())
    assert len(made) == 1 and made[0][marker_key(state)] == sub_id
    mark = record.progress.steps["activity"]
    assert mark.state == "done" and mark.close_id == made[0]["id"]
    assert mark.detail["how"] == "found after a lost answer"
    assert sum(1 for r in state.requests if (r.method, r.path) == ("POST", path)) == 1


async def test_without_a_marker_field_a_lost_activity_is_found_by_its_values(
    queue: Queue, make_settings: Any, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    use_team(state)
    path = "/api/v1/activity/custom/"
    state.add_fault(method="POST", path=path, status=502, after_apply=True)
    activity = {**followup_source()["followup"]["activity"]}
    del activity["marker_field"]
    sources = sources_from({"sources": {"web": followup_source(activity=activity)}})
    async with running_worker(make_settings(), sources, redis):
        record = await wait_for_record(queue, await enqueue(queue, person(8), source="web"))
    made = list(state.custom_activities.values())
    assert len(made) == 1 and marker_key(state) not in made[0]
    assert record.progress.steps["activity"].close_id == made[0]["id"]
    assert record.progress.steps["activity"].detail["how"] == "found after a lost answer"
