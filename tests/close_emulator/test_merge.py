"""``POST /lead/merge/`` behaves as close-api-actions.md section 10 says: the source's contacts,
notes, activities, tasks, opportunities and subscriptions move to the destination, the source is
deleted; custom fields on a conflict follow the ``merge_custom_fields`` option; faults apply."""

from __future__ import annotations

from typing import Any

from tests.close_emulator.test_emulator import email_query
from tests.close_emulator.test_followup_objects import API, Emu, emu, person, uid

__all__ = ["emu"]


async def _lead(emu: Emu, email: str, **custom: Any) -> dict[str, Any]:
    fields = {f"custom.{emu.field_id(name)}": value for name, value in custom.items()}
    return await emu.lead(
        name=email, contacts=[{"name": email, "emails": [{"email": email}]}], **fields
    )


async def test_the_source_moves_into_the_destination_and_is_deleted(emu: Emu) -> None:
    old = await _lead(emu, "ann@buyer.example", Plan="Pro", Interests=["Product"])
    new = await _lead(emu, "ann2@buyer.example", Plan="Team", Interests=["Pricing"])
    new = {**new, **{f"custom.{emu.field_id('External ID')}": "x1"}}
    await emu.call(
        "PUT", f"{API}/lead/{new['id']}/", {f"custom.{emu.field_id('External ID')}": "x1"}
    )
    for lead in (old, new):
        note = {"lead_id": lead["id"], "note": f"from {lead['id']}"}
        assert (await emu.call("POST", f"{API}/activity/note/", note)).status == 200
    task = await emu.call("POST", f"{API}/task/", {"lead_id": new["id"], "text": "Call"})
    kind = (await emu.call("GET", f"{API}/custom_activity/")).body["data"][0]
    fields = {f["name"]: f["id"] for f in kind["fields"]}
    activity = await emu.call(
        "POST",
        f"{API}/activity/custom/",
        {
            "lead_id": new["id"],
            "custom_activity_type_id": kind["id"],
            f"custom.{fields['Source']}": "web",
        },
    )
    assert task.status == 200 and activity.status == 200, activity.text

    merged = await emu.call(
        "POST", f"{API}/lead/merge/", {"source": new["id"], "destination": old["id"]}
    )
    assert (merged.status, merged.body) == (200, {"status": "ok"})

    assert (await emu.call("GET", f"{API}/lead/{new['id']}/")).status == 404
    kept = (await emu.call("GET", f"{API}/lead/{old['id']}/")).body
    emails = {e["email"] for c in kept["contacts"] for e in c["emails"]}
    assert emails == {"ann@buyer.example", "ann2@buyer.example"}
    assert {c["lead_id"] for c in kept["contacts"]} == {old["id"]}
    assert kept[f"custom.{emu.field_id('Plan')}"] == "Pro"  # the destination's value wins
    assert kept[f"custom.{emu.field_id('External ID')}"] == "x1"  # the source's fills a gap
    assert kept[f"custom.{emu.field_id('Interests')}"] == ["Product", "Pricing"]  # the union
    notes = (await emu.call("GET", f"{API}/activity/note/?lead_id={old['id']}")).body["data"]
    assert sorted(n["note"] for n in notes) == sorted(f"from {x['id']}" for x in (old, new))
    tasks = (await emu.call("GET", f"{API}/task/?lead_id={old['id']}")).body["data"]
    assert [t["id"] for t in tasks] == [task.body["id"]]
    acts = (await emu.call("GET", f"{API}/activity/custom/?lead_id={old['id']}")).body["data"]
    assert [a["id"] for a in acts] == [activity.body["id"]]
    # Search: the source is gone, the destination shows both emails.
    for email in ("ann@buyer.example", "ann2@buyer.example"):
        found = (await emu.call("POST", f"{API}/data/search/", {"query": email_query(email)})).body[
            "data"
        ]
        assert [row["id"] for row in found] == [old["id"]]


async def test_merge_custom_fields_option_lets_the_source_win(emu: Emu) -> None:
    emu.state.configure(merge_custom_fields="source")
    old = await _lead(emu, "ann@buyer.example", Plan="Pro")
    new = await _lead(emu, "ann2@buyer.example", Plan="Team")
    await emu.call("POST", f"{API}/lead/merge/", {"source": new["id"], "destination": old["id"]})
    kept = (await emu.call("GET", f"{API}/lead/{old['id']}/")).body
    assert kept[f"custom.{emu.field_id('Plan')}"] == "Team"


async def test_unknown_leads_answer_404(emu: Emu) -> None:
    lead = await person(emu)
    gone = await emu.call(
        "POST", f"{API}/lead/merge/", {"source": "lead_x", "destination": lead["id"]}
    )
    assert (gone.status, gone.body) == (404, {"errors": ["Source lead does not exist."]})
    gone = await emu.call(
        "POST", f"{API}/lead/merge/", {"source": lead["id"], "destination": "lead_x"}
    )
    assert (gone.status, gone.body) == (404, {"errors": ["Destination lead does not exist."]})
    assert (await emu.call("GET", f"{API}/lead/{lead['id']}/")).status == 200


async def test_a_5xx_after_apply_merges_all_the_same(emu: Emu) -> None:
    old = await _lead(emu, "ann@buyer.example")
    new = await _lead(emu, "ann2@buyer.example")
    emu.state.add_fault(method="POST", path="/api/v1/lead/merge/", status=502, after_apply=True)
    body = {"source": new["id"], "destination": old["id"]}
    assert (await emu.call("POST", f"{API}/lead/merge/", body)).status == 502
    assert (await emu.call("GET", f"{API}/lead/{new['id']}/")).status == 404
    again = await emu.call("POST", f"{API}/lead/merge/", body)
    assert (again.status, again.body) == (404, {"errors": ["Source lead does not exist."]})
    assert uid(emu, "api@team.example")


async def test_a_merge_logs_its_events_with_both_lead_ids(emu: Emu) -> None:
    old = await _lead(emu, "ann@buyer.example")
    new = await _lead(emu, "ann2@buyer.example")
    note = await emu.call("POST", f"{API}/activity/note/", {"lead_id": new["id"], "note": "hi"})
    task = await emu.call("POST", f"{API}/task/", {"lead_id": new["id"], "text": "Call"})
    body = {"source": new["id"], "destination": old["id"]}
    assert (await emu.call("POST", f"{API}/lead/merge/", body)).status == 200

    merged = await emu.call("GET", f"{API}/event/?object_type=lead&action=merged")
    [event] = merged.body["data"]
    assert (event["object_id"], event["lead_id"]) == (old["id"], old["id"])
    both = {"merge_source_lead_id": new["id"], "merge_destination_lead_id": old["id"]}
    assert both.items() <= event["meta"].items()
    assert event["meta"]["request_path"] == "/api/v1/lead/merge/"
    # One request: the merge's events share its request_id, and each names both leads.
    same = await emu.call("GET", f"{API}/event/?request_id={event['request_id']}")
    seen = {(e["object_type"], e["action"], e["object_id"]) for e in same.body["data"]}
    contact = new["contacts"][0]["id"]
    assert seen == {
        ("lead", "merged", old["id"]),
        ("lead", "updated", old["id"]),
        ("lead", "deleted", new["id"]),
        ("contact", "updated", contact),
        ("activity.note", "updated", note.body["id"]),
        ("task.lead", "updated", task.body["id"]),
    }
    assert all(both.items() <= e["meta"].items() for e in same.body["data"])
    moved = next(e for e in same.body["data"] if e["object_type"] == "contact")
    assert moved["changed_fields"] == ["lead_id"] and moved["lead_id"] == old["id"]
    # The emulator's own record of it, for tests that follow a merged lead.
    assert emu.state.merges[new["id"]]["destination"] == old["id"]
