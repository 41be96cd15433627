"""The built-in Close emulator behaves like close-api.md says Close does, and its knobs work."""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy

from close_emulator import (
    EMULATOR_STATE,
    EmulatorOptions,
    EmulatorState,
    add_emulator_arguments,
    create_emulator_app,
    options_from_args,
    run_emulator,
)

KEY = "test-emulator-key"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")


def basic(key: str, password: str = "") -> dict[str, str]:
    token = base64.b64encode(f"{key}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class Reply:
    status: int
    body: Any
    headers: CIMultiDictProxy[str]
    text: str


@dataclass
class Emu:
    client: TestClient[web.Request, web.Application]
    state: EmulatorState

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Reply:
        sent = basic(KEY) if headers is None else headers
        async with self.client.request(method, path, json=body, headers=sent, **kwargs) as resp:
            text = await resp.text()
            parsed = await resp.json() if resp.content_type == "application/json" else None
            return Reply(resp.status, parsed, resp.headers, text)

    async def lead(self, **body: Any) -> dict[str, Any]:
        reply = await self.call("POST", "/api/v1/lead/", body)
        assert reply.status == 200, reply.text
        return dict(reply.body)

    def field_id(self, name: str) -> str:
        return next(f.id for f in self.state.options.lead_custom_fields if f.name == name)


@pytest.fixture
def options() -> EmulatorOptions:
    return EmulatorOptions(api_keys=[KEY], seed=7)


@pytest.fixture
async def emu(options: EmulatorOptions) -> AsyncIterator[Emu]:
    app = create_emulator_app(options)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Emu(client, app[EMULATOR_STATE])


def email_query(email: str) -> dict[str, Any]:
    return {
        "type": "and",
        "queries": [
            {"type": "object_type", "object_type": "lead"},
            {
                "type": "has_related",
                "this_object_type": "lead",
                "related_object_type": "contact",
                "related_query": {
                    "type": "has_related",
                    "this_object_type": "contact",
                    "related_object_type": "contact_email",
                    "related_query": {
                        "type": "field_condition",
                        "field": {
                            "type": "regular_field",
                            "object_type": "contact_email",
                            "field_name": "email",
                        },
                        "condition": {"type": "text", "mode": "exact_value", "value": email},
                    },
                },
            },
        ],
    }


def phone_query(phone: str) -> dict[str, Any]:
    query = email_query(phone)
    related = query["queries"][1]["related_query"]
    related["related_object_type"] = "contact_phone"
    related["related_query"]["field"] = {
        "type": "regular_field",
        "object_type": "contact_phone",
        "field_name": "phone",
    }
    return query


LEAD_ONLY = {"type": "object_type", "object_type": "lead"}


def person(email: str = "Jane@Acme.COM", phone: str = "(415) 555-2671") -> dict[str, Any]:
    return {
        "name": "Jane Doe",
        "title": "CTO",
        "emails": [{"email": email, "type": "office"}],
        "phones": [{"phone": phone, "type": "mobile"}],
    }


# Auth ----------------------------------------------------------------------------------------
async def test_missing_or_wrong_key_gets_close_401_body(emu: Emu) -> None:
    for headers in ({}, basic("wrong-key"), {"Authorization": "Bearer wrong-key"}):
        reply = await emu.call("POST", "/api/v1/lead/", {"name": "X"}, headers=headers)
        assert reply.status == 401
        assert reply.body["error"].startswith(
            "The server could not verify that you are authorized to access the URL requested."
        )
    assert emu.state.leads == {}
    assert [r.fault for r in emu.state.requests] == ["auth"] * 3


async def test_basic_with_empty_password_and_bearer_are_accepted(emu: Emu) -> None:
    assert (await emu.call("GET", "/api/v1/status/lead/", headers=basic(KEY))).status == 200
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert (await emu.call("GET", "/api/v1/status/lead/", headers=bearer)).status == 200


async def test_key_revoked_and_restored_at_runtime(emu: Emu) -> None:
    emu.state.options.api_keys = ["some-other-key"]
    assert (await emu.call("GET", "/api/v1/status/lead/")).status == 401
    reply = await emu.call("POST", "/_emulator/config", {"api_keys": [KEY]}, headers={})
    assert reply.status == 200
    assert (await emu.call("GET", "/api/v1/status/lead/")).status == 200


# Lead create ---------------------------------------------------------------------------------
async def test_create_lead_returns_full_lead_with_ids_default_status_and_e164(emu: Emu) -> None:
    source = emu.field_id("Lead Source")
    lead = await emu.lead(
        name="Acme",
        url="https://acme.example",
        contacts=[person()],
        addresses=[{"label": "business", "city": "Oslo", "country": "NO"}],
        **{f"custom.{source}": "website"},
    )
    assert lead["id"].startswith("lead_")
    assert lead["display_name"] == "Acme"
    assert lead["html_url"] == f"https://app.close.com/lead/{lead['id']}/"
    first = emu.state.options.lead_statuses[0]
    assert (lead["status_id"], lead["status_label"]) == (first.id, "Potential")
    assert first.id.startswith("stat_")
    assert lead[f"custom.{source}"] == "website"
    assert lead["addresses"][0]["city"] == "Oslo"
    assert ISO.match(lead["date_created"]) and ISO.match(lead["date_updated"])
    contact = lead["contacts"][0]
    assert contact["id"].startswith("cont_") and contact["lead_id"] == lead["id"]
    assert contact["emails"] == [
        {"email": "Jane@Acme.COM", "type": "office", "is_unsubscribed": False}
    ]
    assert contact["phones"] == [
        {"phone": "+14155552671", "phone_formatted": "+1 415-555-2671", "type": "mobile"}
    ]
    assert contact["display_name"] == "Jane Doe" and contact["title"] == "CTO"
    assert emu.state.leads[lead["id"]]["contacts"][0]["id"] == contact["id"]


async def test_phone_default_region_is_configurable(emu: Emu) -> None:
    emu.state.configure(default_region="GB")
    lead = await emu.lead(contacts=[person(phone="8004445555")])
    phone = lead["contacts"][0]["phones"][0]
    assert (phone["phone"], phone["phone_formatted"]) == ("+448004445555", "+44 800 444 5555")


async def test_status_by_label_and_by_id(emu: Emu) -> None:
    customer = emu.state.options.lead_statuses[3]
    assert (await emu.lead(status="Qualified"))["status_label"] == "Qualified"
    by_id = await emu.lead(status_id=customer.id)
    assert (by_id["status_id"], by_id["status_label"]) == (customer.id, "Customer")


@pytest.mark.parametrize("body", [{"status": "Nope"}, {"status_id": "stat_nope"}])
async def test_bad_status_is_400_under_status(emu: Emu, body: dict[str, str]) -> None:
    reply = await emu.call("POST", "/api/v1/lead/", {"name": "X", **body})
    assert reply.status == 400
    assert reply.body["errors"] == []
    assert list(reply.body["field-errors"]) == ["status"]
    assert emu.state.leads == {}


async def test_unknown_custom_field_is_keyed_by_submitted_key(emu: Emu) -> None:
    reply = await emu.call(
        "POST", "/api/v1/lead/", {"name": "X", "custom.cf_nope": 1, "custom.LinkedIn": "x"}
    )
    assert reply.status == 400
    errors = reply.body["field-errors"]
    assert set(errors) == {"custom.cf_nope", "custom.LinkedIn"}
    assert errors["custom.LinkedIn"] == 'The Custom Field "LinkedIn" does not exist.'
    assert emu.state.leads == {}


async def test_invalid_choice_is_400_and_valid_choice_is_stored(emu: Emu) -> None:
    budget, interests = emu.field_id("Budget"), emu.field_id("Interests")
    reply = await emu.call("POST", "/api/v1/lead/", {f"custom.{budget}": "huge"})
    assert reply.status == 400 and f"custom.{budget}" in reply.body["field-errors"]
    reply = await emu.call("POST", "/api/v1/lead/", {f"custom.{interests}": ["Product", "Golf"]})
    assert reply.status == 400 and f"custom.{interests}" in reply.body["field-errors"]
    lead = await emu.lead(**{f"custom.{budget}": "<10k", f"custom.{interests}": ["Pricing"]})
    assert lead[f"custom.{budget}"] == "<10k"
    assert lead[f"custom.{interests}"] == ["Pricing"]
    custom = {f"custom.{budget}": "<10k", f"custom.{interests}": ["Pricing"]}
    reply = await emu.call("GET", f"/api/v1/lead/{lead['id']}/", params={"_fields": "id,custom"})
    assert reply.body == {"id": lead["id"], **custom}


async def test_nested_contact_error_is_keyed_by_index_string(emu: Emu) -> None:
    bad = {"name": "B", "custom.LinkedIn": "x", "emails": [{"type": "office"}]}
    reply = await emu.call("POST", "/api/v1/lead/", {"contacts": [person(), bad]})
    assert reply.status == 400
    assert reply.body["errors"] == []
    nested = reply.body["field-errors"]["contacts"]["errors"]
    assert list(nested) == ["1"]
    assert nested["1"]["errors"] == []
    inner = nested["1"]["field-errors"]
    assert inner["custom.LinkedIn"] == 'The Custom Field "LinkedIn" does not exist.'
    assert inner["emails"]["errors"]["0"]["field-errors"] == {"email": "This field is required."}
    assert emu.state.leads == {} and emu.state.contacts == {}


async def test_non_json_bodies_are_refused(emu: Emu) -> None:
    reply = await emu.call("POST", "/api/v1/lead/", headers=basic(KEY), data=b"name=X")
    assert reply.status == 415
    headers = {**basic(KEY), "Content-Type": "application/json"}
    reply = await emu.call("POST", "/api/v1/lead/", headers=headers, data=b"{oops")
    assert reply.status == 400 and reply.body["errors"]
    assert emu.state.leads == {}


# Lead read -----------------------------------------------------------------------------------
async def test_get_lead_by_id_fields_and_404_body(emu: Emu) -> None:
    lead = await emu.lead(name="Acme", contacts=[person()])
    reply = await emu.call("GET", f"/api/v1/lead/{lead['id']}/")
    assert reply.status == 200 and reply.body == lead
    reply = await emu.call("GET", f"/api/v1/lead/{lead['id']}/", params={"_fields": "id,name"})
    assert reply.body == {"id": lead["id"], "name": "Acme"}
    reply = await emu.call("GET", "/api/v1/lead/lead_missing/")
    assert reply.status == 404
    assert reply.body == {"error": "Empty query: Lead matching query does not exist."}


async def test_list_leads_skip_limit_and_has_more(emu: Emu) -> None:
    ids = [(await emu.lead(name=f"L{i}"))["id"] for i in range(3)]
    first = await emu.call("GET", "/api/v1/lead/", params={"_limit": "2"})
    assert [lead["id"] for lead in first.body["data"]] == ids[:2] and first.body["has_more"]
    rest = await emu.call("GET", "/api/v1/lead/", params={"_limit": "2", "_skip": "2"})
    assert [lead["id"] for lead in rest.body["data"]] == ids[2:]
    assert rest.body["has_more"] is False
    too_many = await emu.call("GET", "/api/v1/lead/", params={"_limit": "101"})
    assert too_many.status == 400 and "_limit" in too_many.body["field-errors"]


async def test_unknown_route_and_method_get_json_errors(emu: Emu) -> None:
    missing = await emu.call("GET", "/api/v1/nothing/")
    assert missing.status == 404 and "error" in missing.body
    wrong = await emu.call("DELETE", "/api/v1/lead/")
    assert wrong.status == 405 and "error" in wrong.body


# Lead update ---------------------------------------------------------------------------------
async def test_put_is_partial_with_null_clearing_and_add_remove(emu: Emu) -> None:
    source, interests = emu.field_id("Lead Source"), emu.field_id("Interests")
    lead = await emu.lead(
        name="Acme",
        description="old",
        contacts=[person()],
        **{f"custom.{source}": "web", f"custom.{interests}": ["Product"]},
    )
    path = f"/api/v1/lead/{lead['id']}/"
    body = {
        "description": "new",
        "status": "Qualified",
        f"custom.{source}": None,
        f"custom.{interests}.add": "Pricing",
        "contacts": [],  # ignored: contacts change only through the Contacts API
    }
    updated = (await emu.call("PUT", path, body)).body
    assert updated["name"] == "Acme" and updated["description"] == "new"
    assert updated["status_label"] == "Qualified"
    assert f"custom.{source}" not in updated
    assert updated[f"custom.{interests}"] == ["Product", "Pricing"]
    assert len(updated["contacts"]) == 1
    assert updated["date_updated"] > updated["date_created"]
    removed = (await emu.call("PUT", path, {f"custom.{interests}.remove": "Product"})).body
    assert removed[f"custom.{interests}"] == ["Pricing"]
    refused = await emu.call("PUT", path, {"name": "Changed", "custom.cf_nope": 1})
    assert refused.status == 400
    assert emu.state.leads[lead["id"]]["name"] == "Acme"  # nothing applied from a 400
    missing = await emu.call("PUT", "/api/v1/lead/lead_missing/", {"name": "X"})
    assert missing.status == 404
    assert missing.body == {"error": "Empty query: Lead matching query does not exist."}


# Contacts and notes --------------------------------------------------------------------------
async def test_contact_with_lead_id_is_added_to_that_lead(emu: Emu) -> None:
    lead = await emu.lead(name="Acme", contacts=[person()])
    reply = await emu.call(
        "POST", "/api/v1/contact/", {"lead_id": lead["id"], **person("bob@acme.com")}
    )
    assert reply.status == 200
    assert reply.body["id"].startswith("cont_") and reply.body["lead_id"] == lead["id"]
    fetched = (await emu.call("GET", f"/api/v1/lead/{lead['id']}/")).body
    assert [c["id"] for c in fetched["contacts"]][1] == reply.body["id"]
    assert len(emu.state.leads) == 1
    found = await emu.call("POST", "/api/v1/data/search/", {"query": email_query("bob@acme.com")})
    assert [item["id"] for item in found.body["data"]] == [lead["id"]]


async def test_contact_without_lead_id_creates_a_lead_named_after_it(emu: Emu) -> None:
    reply = await emu.call("POST", "/api/v1/contact/", person())
    assert reply.status == 200
    lead = emu.state.leads[reply.body["lead_id"]]
    assert lead["name"] == "Jane Doe" and lead["display_name"] == "Jane Doe"
    assert [c["id"] for c in lead["contacts"]] == [reply.body["id"]]


async def test_contact_with_unknown_lead_is_400_on_lead(emu: Emu) -> None:
    reply = await emu.call("POST", "/api/v1/contact/", {"lead_id": "lead_nope", **person()})
    assert reply.status == 400
    assert reply.body == {"errors": [], "field-errors": {"lead": "Object does not exist."}}
    assert emu.state.leads == {} and emu.state.contacts == {}


async def test_note_is_created_as_activity(emu: Emu) -> None:
    lead = await emu.lead(name="Acme")
    reply = await emu.call(
        "POST", "/api/v1/activity/note/", {"lead_id": lead["id"], "note": "a < b\nline 2"}
    )
    assert reply.status == 200
    note = reply.body
    assert note["_type"] == "Note" and note["id"].startswith("acti_")
    assert note["lead_id"] == lead["id"] and note["note"] == "a < b\nline 2"
    assert note["note_html"] == "<body>a &lt; b<br />line 2</body>"
    assert emu.state.notes_for(lead["id"]) == [note]
    missing = await emu.call("POST", "/api/v1/activity/note/", {"note": "x"})
    assert missing.body["field-errors"] == {"lead": "This field is required."}
    unknown = await emu.call("POST", "/api/v1/activity/note/", {"lead_id": "lead_x", "note": "x"})
    assert unknown.body["field-errors"] == {"lead": "Object does not exist."}
    assert len(emu.state.notes) == 1


async def test_form_submission_post_is_405(emu: Emu) -> None:
    reply = await emu.call("POST", "/api/v1/activity/form_submission/", {"lead_id": "x"})
    assert reply.status == 405


# Org data ------------------------------------------------------------------------------------
async def test_statuses_and_custom_field_schema(emu: Emu) -> None:
    statuses = (await emu.call("GET", "/api/v1/status/lead/")).body
    assert statuses["has_more"] is False
    assert [s["label"] for s in statuses["data"]] == [
        "Potential",
        "Bad Fit",
        "Qualified",
        "Customer",
    ]
    assert all(s["id"].startswith("stat_") for s in statuses["data"])
    fields = (await emu.call("GET", "/api/v1/custom_field_schema/lead/")).body["fields"]
    by_name = {field["name"]: field for field in fields}
    assert by_name["Budget"]["type"] == "choices"
    assert by_name["Budget"]["choices"] == ["<10k", "10k-50k", ">50k"]
    assert by_name["Interests"]["accepts_multiple_values"] is True
    assert by_name["Lead Source"]["type"] == "text"
    assert all(field["id"].startswith("cf_") for field in fields)


# Search --------------------------------------------------------------------------------------
async def test_search_by_email_is_case_insensitive(emu: Emu) -> None:
    lead = await emu.lead(name="Acme", contacts=[person("Jane@Acme.COM")])
    await emu.lead(name="Other", contacts=[person("other@acme.com", "+1 212 555 0100")])
    found = await emu.call("POST", "/api/v1/data/search/", {"query": email_query("jane@acme.com")})
    assert found.body == {"data": [{"__object_type": "lead", "id": lead["id"]}], "cursor": None}
    none = await emu.call("POST", "/api/v1/data/search/", {"query": email_query("no@acme.com")})
    assert none.body["data"] == []


async def test_search_by_phone_matches_e164(emu: Emu) -> None:
    lead = await emu.lead(contacts=[person(phone="(415) 555-2671")])
    found = await emu.call("POST", "/api/v1/data/search/", {"query": phone_query("+14155552671")})
    assert [item["id"] for item in found.body["data"]] == [lead["id"]]
    other = await emu.call("POST", "/api/v1/data/search/", {"query": phone_query("+14155550000")})
    assert other.body["data"] == []


async def test_search_lag_hides_new_leads_until_indexed(emu: Emu) -> None:
    emu.state.configure(search_lag_seconds=0.2)
    lead = await emu.lead(contacts=[person("lag@acme.com")])
    query = {"query": email_query("lag@acme.com")}
    assert (await emu.call("POST", "/api/v1/data/search/", query)).body["data"] == []
    assert (await emu.call("GET", f"/api/v1/lead/{lead['id']}/")).status == 200
    await asyncio.sleep(0.25)
    found = (await emu.call("POST", "/api/v1/data/search/", query)).body["data"]
    assert [item["id"] for item in found] == [lead["id"]]


async def test_search_cursor_limits_counts_fields_and_sort(emu: Emu) -> None:
    ids = [(await emu.lead(name=f"L{i}"))["id"] for i in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        body = {"query": LEAD_ONLY, "_limit": 2, "cursor": cursor}
        page = (await emu.call("POST", "/api/v1/data/search/", body)).body
        seen += [item["id"] for item in page["data"]]
        pages += 1
        cursor = page["cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (ids, 3)
    capped = {"query": LEAD_ONLY, "_limit": 2, "results_limit": 3, "include_counts": True}
    first = (await emu.call("POST", "/api/v1/data/search/", capped)).body
    assert first["count"] == {"total": 5}
    second = await emu.call("POST", "/api/v1/data/search/", {**capped, "cursor": first["cursor"]})
    assert [i["id"] for i in first["data"] + second.body["data"]] == ids[:3]
    assert second.body["cursor"] is None
    sort = [
        {
            "direction": "desc",
            "field": {"type": "regular_field", "object_type": "lead", "field_name": "date_created"},
        }
    ]
    body = {"query": LEAD_ONLY, "sort": sort, "_fields": {"lead": ["id", "display_name"]}}
    newest = (await emu.call("POST", "/api/v1/data/search/", body)).body["data"]
    assert newest[0] == {"__object_type": "lead", "id": ids[-1], "display_name": "L4"}
    assert [item["id"] for item in newest] == ids[::-1]
    too_big = await emu.call("POST", "/api/v1/data/search/", {"query": LEAD_ONLY, "_limit": 201})
    assert too_big.status == 400


async def test_search_custom_field_term_or_and_negate(emu: Emu) -> None:
    ext = emu.field_id("External ID")
    a = await emu.lead(name="A", **{f"custom.{ext}": "X-1"})
    b = await emu.lead(name="B", **{f"custom.{ext}": "X-2"})
    field = {"type": "custom_field", "custom_field_id": ext}

    def exact(value: str, negate: bool = False) -> dict[str, Any]:
        condition = {"type": "text", "mode": "exact_value", "value": value}
        return {"type": "field_condition", "field": field, "condition": condition, "negate": negate}

    async def ids(query: dict[str, Any]) -> list[str]:
        reply = await emu.call("POST", "/api/v1/data/search/", {"query": query})
        assert reply.status == 200, reply.text
        return [item["id"] for item in reply.body["data"]]

    assert await ids(exact("x-1")) == [a["id"]]
    term = {
        "type": "field_condition",
        "field": field,
        "condition": {"type": "term", "values": ["X-2"]},
    }
    assert await ids(term) == [b["id"]]
    assert await ids({"type": "or", "queries": [exact("X-1"), exact("X-2")]}) == [a["id"], b["id"]]
    assert await ids({"type": "and", "queries": [LEAD_ONLY, exact("X-1", negate=True)]}) == [
        b["id"]
    ]


async def test_unsupported_search_is_400_not_silently_empty(emu: Emu) -> None:
    weird = {"type": "has_related", "this_object_type": "lead", "related_object_type": "task"}
    for query in (weird, {"type": "magic"}, {"type": "object_type", "object_type": "task"}):
        reply = await emu.call("POST", "/api/v1/data/search/", {"query": query})
        assert reply.status == 400 and reply.body["errors"]


# Rate limits ---------------------------------------------------------------------------------
def rate(reply: Reply) -> tuple[int, int, int]:
    match = re.fullmatch(r"limit=(\d+), remaining=(\d+), reset=(\d+)", reply.headers["RateLimit"])
    assert match, reply.headers["RateLimit"]
    limit, remaining, reset = match.groups()
    return int(limit), int(remaining), int(reset)


async def test_rate_limit_429_after_n_per_group_and_recovery(emu: Emu) -> None:
    assert "RateLimit" not in (await emu.call("GET", "/api/v1/status/lead/")).headers
    emu.state.configure(rate_limit=3, rate_window=1.0)
    replies = [await emu.call("POST", "/api/v1/lead/", {"name": f"L{i}"}) for i in range(4)]
    assert [r.status for r in replies] == [200, 200, 200, 429]
    assert [rate(r)[:2] for r in replies] == [(3, 2), (3, 1), (3, 0), (3, 0)]
    assert rate(replies[3])[2] == 1  # whole seconds until the bucket is full, rounded up
    error = replies[3].body["error"]
    assert error["message"] == "API call count exceeded for this period"
    assert (error["rate_limit"], error["rate_window"]) == (3, 1)
    assert (error["rate_limit_type"], error["rate_endpoint_group"]) == ("key", "lead_write")
    assert 0 < error["rate_reset"] <= 1 / 3  # until one token is back
    assert len(emu.state.leads) == 3
    assert emu.state.requests[-1].fault == "rate_limited"
    read = await emu.call("GET", "/api/v1/status/lead/")
    assert read.status == 200 and rate(read)[:2] == (3, 2)  # reads are another group
    await asyncio.sleep(1.0)
    again = await emu.call("POST", "/api/v1/lead/", {"name": "later"})
    assert again.status == 200 and rate(again)[1] == 2


@pytest.mark.parametrize("shape", ["flat", "none"])
async def test_rate_limit_body_shapes(emu: Emu, shape: str) -> None:
    emu.state.configure(rate_limit=1, rate_window=10, rate_limit_body=shape)
    await emu.call("GET", "/api/v1/status/lead/")
    reply = await emu.call("GET", "/api/v1/status/lead/")
    assert reply.status == 429
    if shape == "none":
        assert reply.text == ""
    else:
        assert "error" not in reply.body
        assert isinstance(reply.body["rate_reset"], str) and float(reply.body["rate_reset"]) > 9
        assert reply.body["rate_limit_type"] == "key"


async def test_legacy_headers_retry_after_and_no_modern_header(emu: Emu) -> None:
    emu.state.configure(
        rate_limit=2,
        rate_window=4,
        rate_limit_header=False,
        legacy_rate_limit_headers=True,
        retry_after_header=True,
    )
    ok = await emu.call("GET", "/api/v1/status/lead/")
    assert "RateLimit" not in ok.headers and "Retry-After" not in ok.headers
    assert (ok.headers["X-Rate-Limit-Limit"], ok.headers["X-Rate-Limit-Remaining"]) == ("2", "1")
    assert (
        0 < float(ok.headers["X-Rate-Limit-Reset"]) <= 4 and "." in ok.headers["X-Rate-Limit-Reset"]
    )
    await emu.call("GET", "/api/v1/status/lead/")
    limited = await emu.call("GET", "/api/v1/status/lead/")
    assert limited.status == 429
    assert limited.headers["X-Rate-Limit-Remaining"] == "0"
    assert int(limited.headers["Retry-After"]) == 2  # one token comes back after 2 s


async def test_org_limit_spans_keys(emu: Emu) -> None:
    emu.state.configure(
        api_keys=[KEY, "second-key"], rate_limit=5, org_rate_limit=2, rate_window=10
    )
    assert (await emu.call("GET", "/api/v1/status/lead/")).status == 200
    assert (
        await emu.call("GET", "/api/v1/status/lead/", headers=basic("second-key"))
    ).status == 200
    limited = await emu.call("GET", "/api/v1/status/lead/", headers=basic("second-key"))
    assert limited.status == 429 and limited.body["error"]["rate_limit_type"] == "org"


# Faults --------------------------------------------------------------------------------------
async def test_latency_is_added_to_api_requests(emu: Emu) -> None:
    emu.state.configure(latency_ms=150)
    started = time.monotonic()
    assert (await emu.call("GET", "/api/v1/status/lead/")).status == 200
    assert time.monotonic() - started >= 0.15
    assert emu.state.requests[-1].duration_ms >= 150


async def test_error_rate_is_reproducible_with_a_seed(emu: Emu) -> None:
    emu.state.configure(error_rate=0.5, seed=3)

    async def run() -> list[int]:
        return [(await emu.call("GET", "/api/v1/status/lead/")).status for _ in range(20)]

    first = await run()
    emu.state.reset()
    assert await run() == first
    assert 200 in first and set(first) - {200} and set(first) <= {200, 502, 503, 504}
    emu.state.configure(error_rate=1.0)
    reply = await emu.call("POST", "/api/v1/lead/", {"name": "never"})
    assert reply.status in (502, 503, 504)
    assert emu.state.leads == {} and emu.state.requests[-1].applied is False


async def test_after_apply_fault_creates_lead_but_answers_5xx(emu: Emu) -> None:
    emu.state.configure(error_after_apply_rate=1.0)
    reply = await emu.call("POST", "/api/v1/lead/", {"name": "Ghost", "contacts": [person()]})
    assert reply.status in (502, 503, 504)
    record = emu.state.requests[-1]
    assert (record.applied, record.fault) == (True, "error_after_apply")
    assert list(emu.state.leads) == [record.object_id]
    assert len(emu.state.leads_with_email("jane@acme.com")) == 1


async def test_scripted_faults_are_consumed_in_order(emu: Emu) -> None:
    emu.state.add_fault(method="POST", path="/api/v1/lead/", status=503, count=2)
    emu.state.add_fault(
        method="POST", path="/api/v1/lead/", status=502, body={"oops": 1}, headers={"X-Fault": "1"}
    )
    emu.state.add_fault(method="POST", path="/api/v1/lead/", status=504, after_apply=True)
    assert (await emu.call("GET", "/api/v1/status/lead/")).status == 200  # does not match
    replies = [await emu.call("POST", "/api/v1/lead/", {"name": f"L{i}"}) for i in range(5)]
    assert [r.status for r in replies] == [503, 503, 502, 504, 200]
    assert replies[2].body == {"oops": 1} and replies[2].headers["X-Fault"] == "1"
    assert sorted(lead["name"] for lead in emu.state.leads.values()) == ["L3", "L4"]
    assert emu.state.faults == []


async def test_hangs_answer_504_after_waiting(emu: Emu) -> None:
    emu.state.add_fault(path="/api/v1/lead/*", hang=True, hang_seconds=0.2)
    started = time.monotonic()
    reply = await emu.call("GET", "/api/v1/lead/lead_x/")
    assert reply.status == 504 and time.monotonic() - started >= 0.2
    emu.state.configure(hang_rate=1.0, hang_seconds=0.1)
    assert (await emu.call("GET", "/api/v1/status/lead/")).status == 504
    assert emu.state.requests[-1].fault == "hang"


async def test_client_gives_up_on_a_long_hang_and_reset_releases_it(emu: Emu) -> None:
    emu.state.add_fault(method="POST", hang=True, hang_seconds=60)
    timeout = aiohttp.ClientTimeout(total=0.2)
    with pytest.raises(asyncio.TimeoutError):
        await emu.call("POST", "/api/v1/lead/", {"name": "X"}, timeout=timeout)
    emu.state.reset()  # wakes the hung handler so the server can stop promptly
    assert emu.state.leads == {}


# Control over HTTP ---------------------------------------------------------------------------
async def test_control_endpoints(emu: Emu) -> None:
    bad = await emu.call("POST", "/_emulator/config", {"rate_limit": 0}, headers={})
    assert bad.status == 400 and bad.body["details"]
    assert (await emu.call("POST", "/_emulator/config", {"nope": 1}, headers={})).status == 400
    assert (await emu.call("POST", "/_emulator/config", ["x"], headers={})).status == 400
    good = await emu.call("POST", "/_emulator/config", {"search_lag_seconds": 0.01}, headers={})
    assert good.status == 200 and emu.state.options.search_lag_seconds == 0.01

    faults = [{"method": "POST", "path": "/api/v1/lead/", "status": 503}]
    queued = await emu.call("POST", "/_emulator/faults", faults, headers={})
    assert queued.status == 200 and queued.body["data"][0]["status"] == 503
    assert (await emu.call("POST", "/_emulator/faults", {"status": "x"}, headers={})).status == 400
    assert (await emu.call("POST", "/api/v1/lead/", {"name": "X"})).status == 503

    lead = await emu.lead(name="<b>Acme</b>", contacts=[person("shown@acme.com")])
    await emu.call("POST", "/api/v1/activity/note/", {"lead_id": lead["id"], "note": "hi"})
    leads = (await emu.call("GET", "/_emulator/leads", headers={})).body["data"]
    assert leads == [lead]
    notes = (await emu.call("GET", "/_emulator/notes", headers={})).body["data"]
    assert [note["lead_id"] for note in notes] == [lead["id"]]

    log = (await emu.call("GET", "/_emulator/requests", headers={})).body
    assert [r["status"] for r in log["data"]] == [503, 200, 200] and log["next"] == 3
    later = (await emu.call("GET", "/_emulator/requests?since=2", headers={})).body["data"]
    assert [(r["path"], r["applied"]) for r in later] == [("/api/v1/activity/note/", True)]

    page = await emu.call("GET", "/", headers={})
    assert "shown@acme.com" in page.text and "&lt;b&gt;Acme&lt;/b&gt;" in page.text
    assert "<b>Acme</b>" not in page.text

    assert (await emu.call("POST", "/_emulator/reset", headers={})).status == 200
    assert emu.state.leads == {} and emu.state.notes == {} and emu.state.requests == []
    assert (await emu.call("GET", "/_emulator/leads", headers={})).body["data"] == []


# CLI and serving ----------------------------------------------------------------------------
def test_flags_and_environment_build_options(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    add_emulator_arguments(parser)
    flags = "--port 9001 --error-rate 0.2 --api-key a --api-key b --search-lag 0.5"
    args = parser.parse_args([*flags.split(), "--rate-limit", "7", "--seed", "4"])
    options = options_from_args(args)
    assert args.port == 9001
    assert (options.error_rate, options.api_keys, options.search_lag_seconds) == (
        0.2,
        ["a", "b"],
        0.5,
    )
    assert (options.rate_limit, options.seed) == (7, 4)
    monkeypatch.setenv("EMULATOR_API_KEYS", "x, y")
    monkeypatch.setenv("EMULATOR_LATENCY_MS", "25")
    from_env = options_from_args(parser.parse_args([]))
    assert (from_env.api_keys, from_env.latency_ms) == (["x", "y"], 25)
    with pytest.raises(ValueError, match="error_rate"):
        options_from_args(parser.parse_args(["--error-rate", "2"]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_run_emulator_serves_until_cancelled() -> None:
    port = free_port()
    task = asyncio.create_task(run_emulator(EmulatorOptions(api_keys=[KEY]), "127.0.0.1", port))
    url = f"http://127.0.0.1:{port}/api/v1/status/lead/"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(url, headers=basic(KEY)) as resp:
                        assert resp.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.02)
            else:
                pytest.fail("emulator did not start")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
