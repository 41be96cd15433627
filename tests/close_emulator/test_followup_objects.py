"""The emulator's follow-up objects behave as close-api-actions.md says Close's do: users,
groups, sender accounts, tasks, sequences and subscriptions, the unsubscribe list, lead and
contact updates, opportunities in pipelines, custom activities, with the same faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from close_emulator import EMULATOR_STATE, EmulatorOptions, create_emulator_app
from close_emulator.org import parse_org
from tests.close_emulator.test_emulator import KEY, Emu
from tests.team import ORG, REPS

API = "/api/v1"


@pytest.fixture
async def emu() -> AsyncIterator[Emu]:
    options = EmulatorOptions(api_keys=[KEY], seed=3, **parse_org(ORG))
    app = create_emulator_app(options)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Emu(client, app[EMULATOR_STATE])


def uid(emu: Emu, email: str) -> str:
    return next(u.id for u in emu.state.options.users if u.email == email)


async def person(emu: Emu, email: str = "ann@buyer.example") -> dict[str, Any]:
    return await emu.lead(
        name="Buyer", contacts=[{"name": "Ann", "emails": [{"email": email}], "phones": []}]
    )


async def test_users_groups_and_sender_accounts(emu: Emu) -> None:
    me = (await emu.call("GET", f"{API}/me/")).body
    assert me["id"] == uid(emu, "api@team.example") and "organization_id" not in me
    groups = (await emu.call("GET", f"{API}/group/")).body["data"]
    assert [g["name"] for g in groups] == ["Inbound Reps"] and "members" not in groups[0]
    full = (await emu.call("GET", f"{API}/group/{groups[0]['id']}/")).body
    assert [m["user_id"] for m in full["members"]] == [
        uid(emu, e) for e in [*REPS, "gone@team.example"]
    ]
    rep = uid(emu, REPS[0])
    accounts = (await emu.call("GET", f"{API}/connected_account/?user_id={rep}")).body["data"]
    assert len(accounts) == 1 and accounts[0]["id"].startswith("emailacct_")
    assert accounts[0]["identities"] == [{"email": REPS[0], "name": "Rep 1"}]
    org = (await emu.call("GET", f"{API}/organization/{me['organizations'][0]['id']}/")).body
    assert uid(emu, "gone@team.example") in {m["user_id"] for m in org["inactive_memberships"]}


async def test_a_team_set_up_at_run_time_over_the_control_api(emu: Emu) -> None:
    """Tests and ``make run`` set users, groups and sequences with ``POST /_emulator/config``."""
    team = {
        "users": [
            {"email": "lead@new.example", "name": "Lead"},
            {"email": "ada@new.example", "name": "Ada"},
            {"email": "bo@new.example", "name": "Bo", "active": False},
        ],
        "groups": [{"name": "Night Shift", "members": ["ada@new.example", "bo@new.example"]}],
        "sequences": [{"name": "Night nurture"}, {"name": "Old", "status": "archived"}],
    }
    reply = await emu.call("POST", "/_emulator/config", team, headers={})
    assert reply.status == 200, reply.body
    users = (await emu.call("GET", f"{API}/user/")).body["data"]
    assert [u["email"] for u in users] == [u["email"] for u in team["users"]]
    assert (await emu.call("GET", f"{API}/me/")).body["email"] == "lead@new.example"
    groups = (await emu.call("GET", f"{API}/group/")).body["data"]
    assert [g["name"] for g in groups] == ["Night Shift"]
    full = (await emu.call("GET", f"{API}/group/{groups[0]['id']}/")).body
    assert [m["user_id"] for m in full["members"]] == [
        uid(emu, "ada@new.example"),
        uid(emu, "bo@new.example"),
    ]
    sequences = (await emu.call("GET", f"{API}/sequence/")).body["data"]
    assert {s["name"]: s["status"] for s in sequences} == {
        "Night nurture": "active",
        "Old": "archived",
    }
    unknown = {"groups": [{"name": "G", "members": ["nobody@new.example"]}]}
    refused = await emu.call("POST", "/_emulator/config", unknown, headers={})
    assert refused.status == 400, refused.body


async def test_tasks_as_recorded(emu: Emu) -> None:
    lead = await person(emu)
    plain = await emu.call("POST", f"{API}/task/", {"lead_id": lead["id"], "text": "Call"})
    assert plain.status == 200
    task = plain.body
    assert task["id"].startswith("task_") and task["_type"] == "lead"
    assert task["assigned_to"] == emu.state.options.user_id  # the API key's user
    assert task["is_dateless"] is True and task["due_date"] is None and task["view"] == "inbox"
    dated = await emu.call(
        "POST",
        f"{API}/task/",
        {
            "_type": "outgoing_call",
            "lead_id": lead["id"],
            "contact_id": lead["contacts"][0]["id"],
            "assigned_to": uid(emu, REPS[1]),
            "date": "2030-01-01T09:00:00+00:00",
        },
    )
    assert dated.status == 200 and dated.body["is_dateless"] is False
    assert dated.body["view"] == "future" and dated.body["assigned_to_name"] == "Rep 2"
    bad = await emu.call("POST", f"{API}/task/", {"lead_id": "lead_nope", "text": "x"})
    assert bad.status == 400 and bad.body["field-errors"] == {"lead": "Object does not exist."}
    kind = await emu.call("POST", f"{API}/task/", {"lead_id": lead["id"], "_type": "email"})
    assert kind.status == 400 and "_type" in kind.body["field-errors"]
    only_lead = (await emu.call("GET", f"{API}/task/?lead_id={lead['id']}")).body["data"]
    assert [t["id"] for t in only_lead] == [task["id"]]  # the default lists lead tasks only
    every = (await emu.call("GET", f"{API}/task/?lead_id={lead['id']}&_type=all")).body["data"]
    assert len(every) == 2
    later = (
        await emu.call("GET", f"{API}/task/?lead_id={lead['id']}&date_created__gte=2999-01-01")
    ).body["data"]
    assert later == []


async def test_subscriptions_duplicates_unsubscribed_and_inactive_senders(emu: Emu) -> None:
    lead = await person(emu)
    contact = lead["contacts"][0]
    sequence = (await emu.call("GET", f"{API}/sequence/")).body["data"][0]
    accounts = (await emu.call("GET", f"{API}/connected_account/")).body["data"]
    by_user = {a["user_id"]: a for a in accounts}
    body = {
        "sequence_id": sequence["id"],
        "contact_id": contact["id"],
        "contact_email": "ann@buyer.example",
        "sender_account_id": by_user[uid(emu, REPS[0])]["id"],
    }
    made = await emu.call("POST", f"{API}/sequence_subscription/", body)
    assert made.status == 201 and made.body["status"] == "active"
    assert made.body["id"].startswith("sub_") and made.body["lead_id"] == lead["id"]
    again = await emu.call("POST", f"{API}/sequence_subscription/", body)
    assert again.status == 400  # a duplicate (Close's answer UNKNOWN: configurable)
    emu.state.configure(duplicate_subscriptions="allow")
    assert (await emu.call("POST", f"{API}/sequence_subscription/", body)).status == 201
    listed = await emu.call("GET", f"{API}/sequence_subscription/?contact_id={contact['id']}")
    assert len(listed.body["data"]) == 2
    assert (await emu.call("GET", f"{API}/sequence_subscription/")).status == 400
    gone = by_user[uid(emu, "gone@team.example")]["id"]
    other = await person(emu, "bo@buyer.example")
    inactive = await emu.call(
        "POST",
        f"{API}/sequence_subscription/",
        {
            **body,
            "contact_id": other["contacts"][0]["id"],
            "contact_email": "bo@buyer.example",
            "sender_account_id": gone,
        },
    )
    assert inactive.body["status"] == "error"
    assert inactive.body["status_reason"] == "membership-inactive"
    assert (
        await emu.call("POST", f"{API}/unsubscribe/email/", {"email": "Bo@Buyer.example"})
    ).status == 201
    contact_now = (await emu.call("GET", f"{API}/contact/{other['contacts'][0]['id']}/")).body
    assert contact_now["emails"][0]["is_unsubscribed"] is True


async def test_lead_and_contact_updates(emu: Emu) -> None:
    lead = await person(emu)
    interests, owner = (f"custom.{emu.field_id(n)}" for n in ("Interests", "Lead Owner"))
    put = await emu.call(
        "PUT",
        f"{API}/lead/{lead['id']}/",
        {"description": "new", f"{interests}.add": "Pricing", owner: uid(emu, REPS[2])},
    )
    assert put.status == 200 and put.body["name"] == "Buyer" and put.body["description"] == "new"
    assert put.body[interests] == ["Pricing"] and put.body[owner] == uid(emu, REPS[2])
    cleared = await emu.call("PUT", f"{API}/lead/{lead['id']}/", {owner: None})
    assert owner not in cleared.body
    stranger = await emu.call("PUT", f"{API}/lead/{lead['id']}/", {owner: "user_nobody"})
    assert stranger.status == 400 and owner in stranger.body["field-errors"]
    contact = lead["contacts"][0]
    phones = [{"phone": "+1 415 555 0101", "type": "mobile"}]
    changed = await emu.call("PUT", f"{API}/contact/{contact['id']}/", {"phones": phones})
    assert [p["phone"] for p in changed.body["phones"]] == ["+14155550101"]
    assert [e["email"] for e in changed.body["emails"]] == ["ann@buyer.example"]  # kept
    lead_now = (await emu.call("GET", f"{API}/lead/{lead['id']}/")).body
    assert lead_now["contacts"][0]["phones"][0]["phone"] == "+14155550101"


async def test_opportunities_in_pipelines(emu: Emu) -> None:
    lead = await person(emu)
    pipelines = (await emu.call("GET", f"{API}/pipeline/")).body["data"]
    sales = next(p for p in pipelines if p["name"] == "Sales")
    won = next(s for s in sales["statuses"] if s["type"] == "won")
    made = await emu.call(
        "POST",
        f"{API}/opportunity/",
        {
            "lead_id": lead["id"],
            "pipeline_id": sales["id"],
            "value": 500,
            "value_period": "monthly",
        },
    )
    assert made.status == 200
    deal = made.body
    assert deal["value_formatted"] == "$5 monthly" and deal["value_currency"] == "USD"
    assert deal["status_label"] == "Demo requested" and deal["status_type"] == "active"
    assert (
        await emu.call("POST", f"{API}/opportunity/", {"lead_id": lead["id"], "value": 1.5})
    ).status == 400
    other = next(p for p in pipelines if p["name"] == "Partners")
    wrong = await emu.call(
        "POST",
        f"{API}/opportunity/",
        {"lead_id": lead["id"], "pipeline_id": other["id"], "status_id": won["id"]},
    )
    assert wrong.status == 400 and "status_id" in wrong.body["field-errors"]
    unknown = await emu.call("POST", f"{API}/opportunity/", {"lead_id": lead["id"], "colour": 1})
    assert unknown.status == 400
    moved = await emu.call("PUT", f"{API}/opportunity/{deal['id']}/", {"status_id": won["id"]})
    assert moved.body["status_type"] == "won" and moved.body["date_won"]
    active = await emu.call("GET", f"{API}/opportunity/?lead_id={lead['id']}&status_type=active")
    assert active.body["data"] == [] and active.body["total_results"] == 0


async def test_custom_activities_check_their_required_fields(emu: Emu) -> None:
    lead = await person(emu)
    kind = (await emu.call("GET", f"{API}/custom_activity/")).body["data"][0]
    fields = {f["name"]: f["id"] for f in kind["fields"]}
    base = {"custom_activity_type_id": kind["id"], "lead_id": lead["id"]}
    missing = await emu.call(
        "POST", f"{API}/activity/custom/", {**base, f"custom.{fields['Page']}": "/x"}
    )
    assert missing.status == 400
    assert missing.body["field-errors"] == {f"custom.{fields['Source']}": "This field is required."}
    draft = await emu.call("POST", f"{API}/activity/custom/", {**base, "status": "draft"})
    assert draft.status == 200 and draft.body["status"] == "draft"
    made = await emu.call(
        "POST", f"{API}/activity/custom/", {**base, f"custom.{fields['Source']}": "web"}
    )
    assert made.status == 200 and made.body["_type"] == "CustomActivity"
    assert made.body[f"custom.{fields['Source']}"] == "web"
    by_type = f"{API}/activity/custom/?custom_activity_type_id={kind['id']}"
    assert (await emu.call("GET", by_type)).status == 400  # filtering by type needs lead_id
    listed = await emu.call("GET", f"{by_type}&lead_id={lead['id']}")
    assert len(listed.body["data"]) == 2


async def test_a_fault_after_applying_a_task_still_makes_it(emu: Emu) -> None:
    lead = await person(emu)
    emu.state.add_fault(method="POST", path=f"{API}/task/", status=502, after_apply=True)
    reply = await emu.call("POST", f"{API}/task/", {"lead_id": lead["id"], "text": "Call"})
    assert reply.status == 502 and len(emu.state.tasks) == 1
    emu.state.add_fault(method="POST", path=f"{API}/opportunity/", status=503)
    assert (await emu.call("POST", f"{API}/opportunity/", {"lead_id": lead["id"]})).status == 503
    assert emu.state.opportunities == {}


async def test_notes_are_listed_newest_first_by_lead_and_creation_time_and_paged(
    emu: Emu,
) -> None:
    lead, other = await person(emu), await person(emu, "bo@buyer.example")
    made = []
    for n in range(5):
        reply = await emu.call(
            "POST", f"{API}/activity/note/", {"lead_id": lead["id"], "note": f"n{n}\nline"}
        )
        made.append(reply.body)
    await emu.call("POST", f"{API}/activity/note/", {"lead_id": other["id"], "note": "other"})
    for n, note in enumerate(made):  # one a minute, n0 the oldest
        emu.state.notes[note["id"]]["date_created"] = f"2026-01-01T12:0{n}:00.000000+00:00"
    listed = await emu.call("GET", f"{API}/activity/note/?lead_id={lead['id']}")
    assert [n["note"] for n in listed.body["data"]] == [f"n{n}\nline" for n in (4, 3, 2, 1, 0)]
    assert listed.body["data"][0]["note_html"] == "<body>n4<br />line</body>"
    since = f"{API}/activity/note/?lead_id={lead['id']}&date_created__gte=2026-01-01T12:02:00Z"
    first = await emu.call("GET", f"{since}&_limit=2")
    assert [n["note"][:2] for n in first.body["data"]] == ["n4", "n3"] and first.body["has_more"]
    rest = await emu.call("GET", f"{since}&_limit=2&_skip=2")
    assert [n["note"][:2] for n in rest.body["data"]] == ["n2"] and not rest.body["has_more"]
    window = (
        f"{API}/activity/note/?lead_id={lead['id']}"
        "&date_created__gt=2026-01-01T12:01:00Z&date_created__lt=2026-01-01T12:03:00Z"
    )
    assert [n["note"][:2] for n in (await emu.call("GET", window)).body["data"]] == ["n2"]
    upto = f"{API}/activity/note/?lead_id={lead['id']}&date_created__lte=2026-01-01T12:01:00Z"
    assert [n["note"][:2] for n in (await emu.call("GET", upto)).body["data"]] == ["n1", "n0"]
    assert len((await emu.call("GET", f"{API}/activity/note/")).body["data"]) == 6
    bad = await emu.call("GET", f"{API}/activity/note/?date_created__gte=yesterday")
    assert bad.status == 400


async def test_a_note_applied_then_answered_5xx_is_on_the_lead(emu: Emu) -> None:
    lead = await person(emu)
    emu.state.add_fault(method="POST", path=f"{API}/activity/note/", status=502, after_apply=True)
    reply = await emu.call("POST", f"{API}/activity/note/", {"lead_id": lead["id"], "note": "x"})
    assert reply.status == 502
    listed = await emu.call("GET", f"{API}/activity/note/?lead_id={lead['id']}")
    assert [n["note"] for n in listed.body["data"]] == ["x"]


async def test_custom_activities_are_listed_by_lead_and_type(emu: Emu) -> None:
    lead, other = await person(emu), await person(emu, "bo@buyer.example")
    kind = (await emu.call("GET", f"{API}/custom_activity/")).body["data"][0]
    source = next(f["id"] for f in kind["fields"] if f["name"] == "Source")
    for owner in (lead, other, lead):
        body = {"custom_activity_type_id": kind["id"], "lead_id": owner["id"]}
        await emu.call("POST", f"{API}/activity/custom/", {**body, f"custom.{source}": "web"})
    by_type = f"{API}/activity/custom/?custom_activity_type_id={kind['id']}"
    mine = (await emu.call("GET", f"{by_type}&lead_id={lead['id']}")).body["data"]
    assert len(mine) == 2 and {a["lead_id"] for a in mine} == {lead["id"]}
    theirs = (await emu.call("GET", f"{by_type}&lead_id={other['id']}")).body["data"]
    assert len(theirs) == 1 and theirs[0]["lead_id"] == other["id"]
    none = f"{API}/activity/custom/?custom_activity_type_id=actitype_x&lead_id={lead['id']}"
    assert (await emu.call("GET", none)).body["data"] == []
