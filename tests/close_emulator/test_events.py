"""The emulator's event log behaves as close-api-actions.md §8 says Close's does: an event per
change with the request's id, the supported filter combinations only, cursor pages of at most
50 newest first, and the options for what the doc leaves unknown (lag, contacts, access)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer

from close_emulator import EMULATOR_STATE, EmulatorOptions, create_emulator_app
from close_emulator.events import RETENTION_SECONDS
from tests.close_emulator.test_emulator import KEY, Emu

API = "/api/v1"


@pytest.fixture
async def emu() -> AsyncIterator[Emu]:
    app = create_emulator_app(EmulatorOptions(api_keys=[KEY], seed=5))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Emu(client, app[EMULATOR_STATE])


def person(n: int) -> dict[str, Any]:
    return {"name": f"Lead {n}", "contacts": [{"emails": [{"email": f"p{n}@example.com"}]}]}


async def events(emu: Emu, **query: Any) -> Any:
    reply = await emu.call("GET", f"{API}/event/?{urlencode(query)}")
    assert reply.status == 200, reply.text
    return reply.body


async def test_a_lead_create_logs_the_lead_and_its_contacts_under_one_request(emu: Emu) -> None:
    lead = await emu.lead(**person(1))
    me = emu.state.options.user_id
    page = await events(emu, user_id=me)
    assert [(e["object_type"], e["action"]) for e in page["data"]] == [
        ("contact", "created"),
        ("lead", "created"),
    ]
    contact_event, lead_event = page["data"]
    assert lead_event["object_id"] == lead["id"] == lead_event["lead_id"]
    assert contact_event["lead_id"] == lead["id"]
    assert lead_event["request_id"].startswith("req_")
    assert lead_event["request_id"] == contact_event["request_id"]
    assert lead_event["id"].startswith("ev_") and lead_event["api_key_id"]
    assert lead_event["meta"] == {"request_method": "POST", "request_path": "/api/v1/lead/"}
    assert lead_event["data"]["contact_ids"] == [lead["contacts"][0]["id"]]
    assert "contacts" not in lead_event["data"]
    assert contact_event["data"]["emails"][0]["email"] == "p1@example.com"
    by_request = await events(emu, request_id=lead_event["request_id"])
    assert len(by_request["data"]) == 2
    other = await emu.lead(**person(2))
    assert (await events(emu, lead_id=other["id"], object_type="lead"))["data"][0][
        "request_id"
    ] != lead_event["request_id"]


async def test_updates_carry_changed_fields_and_previous_values(emu: Emu) -> None:
    lead = await emu.lead(**person(3))
    reply = await emu.call("PUT", f"{API}/lead/{lead['id']}/", {"name": "Renamed"})
    assert reply.status == 200
    updated = (await events(emu, object_type="lead", action="updated"))["data"]
    assert len(updated) == 1
    assert "name" in updated[0]["changed_fields"]
    assert updated[0]["previous_data"]["name"] == "Lead 3"
    assert updated[0]["data"]["name"] == "Renamed"


async def test_only_the_documented_filter_combinations_are_answered(emu: Emu) -> None:
    await emu.lead(**person(4))
    me = emu.state.options.user_id
    for query in (
        {"object_type": "lead", "action": "created"},
        {"user_id": me, "object_type": "lead", "action": "created"},
        {"lead_id": "lead_x"},
        {"date_updated__gte": "2020-01-01T00:00:00+00:00"},
    ):
        assert (await emu.call("GET", f"{API}/event/?{urlencode(query)}")).status == 200
    for query in (
        {"object_type": "lead"},
        {"action": "created"},
        {"request_id": "req_x", "user_id": me},
        {"object_type": "lead", "action": "created", "object_id": "lead_x"},
        {"_skip": "10"},
        {"_limit": "51"},
    ):
        reply = await emu.call("GET", f"{API}/event/?{urlencode(query)}")
        assert reply.status == 400, query


async def test_pages_of_fifty_newest_first_follow_the_cursor(emu: Emu) -> None:
    made = [(await emu.lead(**person(10 + n)))["id"] for n in range(60)]
    query = {"object_type": "lead", "action": "created"}
    first = await events(emu, **query)
    assert len(first["data"]) == 50 and first["cursor_next"]
    second = await events(emu, **query, _cursor=first["cursor_next"])
    assert len(second["data"]) == 10 and second["cursor_next"] is None
    listed = [e["object_id"] for e in first["data"] + second["data"]]
    assert listed == list(reversed(made))
    dates = [e["date_updated"] for e in first["data"] + second["data"]]
    assert dates == sorted(dates, reverse=True)
    small = await events(emu, **query, _limit=7)
    assert len(small["data"]) == 7


async def test_date_bounds_and_retention(emu: Emu) -> None:
    old = await emu.lead(**person(20))
    middle = (await events(emu, object_type="lead", action="created"))["data"][0]
    await asyncio.sleep(0.01)
    new = await emu.lead(**person(21))
    after = await events(
        emu, object_type="lead", action="created", date_updated__gt=middle["date_updated"]
    )
    assert [e["object_id"] for e in after["data"]] == [new["id"]]
    upto = await events(
        emu, object_type="lead", action="created", date_updated__lte=middle["date_updated"]
    )
    assert [e["object_id"] for e in upto["data"]] == [old["id"]]
    for logged in emu.state.events.logged:  # a month passes for the first lead's events
        if logged.event["lead_id"] == old["id"]:
            logged.at -= RETENTION_SECONDS + 1
    listed = await events(emu, object_type="lead", action="created")
    assert [e["object_id"] for e in listed["data"]] == [new["id"]]


async def test_an_event_lag_hides_events_for_a_while(emu: Emu) -> None:
    emu.state.configure(event_lag_seconds=0.3)
    await emu.lead(**person(30))
    assert (await events(emu, object_type="lead", action="created"))["data"] == []
    await asyncio.sleep(0.35)
    assert len((await events(emu, object_type="lead", action="created"))["data"]) == 1


async def test_a_create_answered_5xx_after_applying_is_in_the_log(emu: Emu) -> None:
    emu.state.add_fault(method="POST", path="/api/v1/lead/", status=502, after_apply=True)
    reply = await emu.call("POST", f"{API}/lead/", person(40))
    assert reply.status == 502
    logged = (await events(emu, object_type="lead", action="created"))["data"]
    assert len(logged) == 1 and logged[0]["object_id"] in emu.state.leads
    emu.state.add_fault(method="POST", path="/api/v1/lead/", status=503)  # not applied
    assert (await emu.call("POST", f"{API}/lead/", person(41))).status == 503
    assert len((await events(emu, object_type="lead", action="created"))["data"]) == 1


async def test_options_for_contacts_access_and_non_admin_keys(emu: Emu) -> None:
    emu.state.configure(event_lead_contacts=True)
    await emu.lead(**person(50))
    event = (await events(emu, object_type="lead", action="created"))["data"][0]
    assert event["data"]["contacts"][0]["emails"][0]["email"] == "p50@example.com"
    emu.state.configure(event_key_role="user")
    for logged in emu.state.events.logged:
        logged.at -= 2 * 3600  # two hours old: a user key no longer sees the data
    event = (await events(emu, object_type="lead", action="created"))["data"][0]
    assert event["data"] is None and event["object_id"]
    emu.state.configure(event_log_access="forbid")
    assert (await emu.call("GET", f"{API}/event/")).status == 403
