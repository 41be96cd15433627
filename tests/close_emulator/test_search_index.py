"""The emulator's search answers from its indexes exactly what a scan of every lead answers:
the person lookup the worker sends (an ``or`` of email and phone, contacts in ``_fields``),
lead-id conditions, negations, contact results, and the search lag."""

from __future__ import annotations

import time
from typing import Any

import pytest

from close_emulator import EmulatorOptions, EmulatorState
from close_emulator.objects import create_contact, create_lead, update_lead
from close_emulator.search import SearchObject, compile_query, narrow, run_search


def _related(kind: str, value: str) -> dict[str, Any]:
    field = {"contact_email": "email", "contact_phone": "phone"}[kind]
    return {
        "type": "has_related",
        "this_object_type": "contact",
        "related_object_type": kind,
        "related_query": {
            "type": "field_condition",
            "field": {"type": "regular_field", "object_type": kind, "field_name": field},
            "condition": {"type": "text", "mode": "exact_value", "value": value},
        },
    }


def lead_with(kind: str, value: str) -> dict[str, Any]:
    return {
        "type": "has_related",
        "this_object_type": "lead",
        "related_object_type": "contact",
        "related_query": _related(kind, value),
    }


def leads(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"type": "and", "queries": [{"type": "object_type", "object_type": "lead"}, *conditions]}


def person_query(email: str, phone: str) -> dict[str, Any]:
    either = {
        "type": "or",
        "queries": [lead_with("contact_email", email), lead_with("contact_phone", phone)],
    }
    return leads(either)


def ids_field(object_type: str, name: str, values: list[str]) -> dict[str, Any]:
    return {
        "type": "field_condition",
        "field": {"type": "regular_field", "object_type": object_type, "field_name": name},
        "condition": {"type": "term", "values": values},
    }


@pytest.fixture
def state() -> EmulatorState:
    state = EmulatorState(EmulatorOptions(seed=3))
    for i in range(60):
        contacts = [
            {
                "name": f"P{i}",
                "emails": [{"email": f"P{i}@Example.com"}],
                "phones": [{"phone": f"+1 415 555 {1000 + i % 20}"}],  # shared by three
            }
        ]
        create_lead({"name": f"Lead {i}", "contacts": contacts}, state)
    return state


def search(state: EmulatorState, body: dict[str, Any]) -> dict[str, Any]:
    return run_search(body, state.index, time.monotonic(), state.options, state.live_object)


def scanned(state: EmulatorState, body: dict[str, Any]) -> list[str]:
    """What a scan of every visible lead finds, in creation order (the reference)."""
    predicate = compile_query(body["query"], state.options)
    found = []
    for lead in state.index.visible(time.monotonic()):
        objects = [("lead", lead)] + [("contact", c) for c in lead["contacts"]]
        for kind, data in objects:
            if predicate(SearchObject(kind, data, lead)):
                found.append(data["id"])
    return found


def test_the_person_query_returns_both_matches_with_their_contacts(state: EmulatorState) -> None:
    body = {
        "query": person_query("p3@example.com", "+14155551004"),
        "_fields": {"lead": ["id", "display_name", "contacts"]},
        "_limit": 25,
    }
    rows = search(state, body)["data"]
    names = [row["display_name"] for row in rows]
    # 3 by email; 4, 24 and 44 share the phone
    assert names == ["Lead 3", "Lead 4", "Lead 24", "Lead 44"]
    contact = rows[0]["contacts"][0]
    assert contact["emails"][0]["email"] == "P3@Example.com"
    assert contact["phones"][0]["phone"] == "+14155551003"


QUERIES = [
    person_query("p3@example.com", "+14155551004"),
    leads(lead_with("contact_email", "P7@EXAMPLE.COM")),
    leads(lead_with("contact_phone", "(415) 555-1011")),
    leads(lead_with("contact_email", "nobody@example.com")),
    leads({**lead_with("contact_email", "p7@example.com"), "negate": True}),
    {"type": "or", "queries": [lead_with("contact_email", "p1@example.com"), leads()]},
    {
        "type": "and",
        "queries": [
            {"type": "object_type", "object_type": "contact"},
            _related("contact_email", "p9@example.com"),
        ],
    },
]


@pytest.mark.parametrize("query", QUERIES, ids=[f"query{i}" for i in range(len(QUERIES))])
def test_indexed_answers_equal_a_scan(state: EmulatorState, query: dict[str, Any]) -> None:
    body = {"query": query, "_limit": 200}
    assert [row["id"] for row in search(state, body)["data"]] == scanned(state, body)


def test_lead_id_conditions_and_narrowing_to_the_few_candidates(state: EmulatorState) -> None:
    some = list(state.leads)[5:8]
    body = {"query": leads(ids_field("lead", "id", [*some, "lead_unknown"])), "_limit": 200}
    assert [row["id"] for row in search(state, body)["data"]] == some
    region = state.options.default_region
    assert narrow(body["query"], state.index, region) == set(some)
    person = person_query("p3@example.com", "+14155551004")
    assert len(narrow(person, state.index, region) or ()) == 4  # not 60: no scan
    assert narrow(leads(), state.index, region) is None  # a listing scans


def test_updates_move_the_index_with_the_search_lag(state: EmulatorState) -> None:
    lead = next(iter(state.leads.values()))
    query = {"query": leads(lead_with("contact_email", "new@example.com"))}
    state.configure(search_lag_seconds=30.0)
    create_contact(
        {"lead_id": lead["id"], "name": "New", "emails": [{"email": "new@example.com"}]}, state
    )
    assert search(state, query)["data"] == []  # not indexed yet
    assert [lead["id"]] == [item["id"] for item in state.leads_with_email("new@example.com")]
    state.configure(search_lag_seconds=0.0)
    update_lead(lead, {"description": "touched"}, state)  # indexed at once: supersedes both
    assert [row["id"] for row in search(state, query)["data"]] == [lead["id"]]
    old = {"query": leads(lead_with("contact_email", "p0@example.com"))}
    assert [row["id"] for row in search(state, old)["data"]] == [lead["id"]]  # still its contact
