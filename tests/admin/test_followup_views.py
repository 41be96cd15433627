"""The follow-ups where people look: a submission's page shows the owner by name and every step
with its state and Close id (and why one was skipped); the API gives the owner and the steps."""

from __future__ import annotations

import html
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.queue import Queue
from service.receiver.app import create_app
from tests.admin.test_admin import ADMIN, login
from tests.conftest import emulator_state, enqueue, running_worker, sources_from, wait_for_record
from tests.team import followup_source, use_team, user_id


async def test_the_submission_page_and_the_api_show_owner_and_steps(
    queue: Queue, make_settings: Any, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    use_team(state)
    state.unsubscribed.add("ivy@buyer.example")
    sources = sources_from({"sources": {"web": followup_source()}})
    settings = make_settings()
    body = {"email": "ivy@buyer.example", "name": "Ivy Buyer", "message": "a demo please"}
    async with running_worker(settings, sources, redis):
        record = await wait_for_record(queue, await enqueue(queue, body, source="web"))
    owner = record.progress.steps["owner"].close_id
    assert owner in {user_id(state, f"rep{n}@team.example") for n in range(1, 5)}
    name = next(u.name for u in state.options.users if u.id == owner)
    app = create_app(settings, sources, redis=redis)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        api = await (await client.get(f"/v1/submissions/{record.id}", headers=ADMIN)).json()
        listed = await (await client.get("/v1/submissions", headers=ADMIN)).json()
        await login(client)
        page = html.unescape(await (await client.get(f"/admin/submissions/{record.id}")).text())
    assert api["owner"] == owner
    assert api["steps"]["task"]["close_id"] == record.progress.steps["task"].close_id
    assert api["steps"]["sequence"]["reason"] == "the email address is unsubscribed"
    assert listed["submissions"][0]["owner"] == owner
    assert f"{name} " in page and owner in page  # the owner by name, as the workers read it
    assert "Steps after the lead" in page
    for step in ("owner", "task", "note", "activity", "opportunity", "sequence"):
        assert f'data-step="{step}"' in page, step
        close_id = record.progress.steps[step].close_id
        if close_id:
            assert close_id in page
    assert "the email address is unsubscribed" in page
