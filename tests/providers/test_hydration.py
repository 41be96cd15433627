"""Thin provider webhooks end to end: each provider's documented notification, signed as the
provider signs it, posted to the receiver; the worker fetches the person from the provider
emulator and the right person is in the Close emulator's lead (or the submission ends with a
specific reason). Covers Meta's handshake, a multi-change Meta POST, an expired Meta token
(paused, then resumed with nothing lost), a HubSpot array of three events, and Calendly
routing forms with and without a submitter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from provider_emulator import PROVIDER_STATE, ProviderFault
from service.config.settings import Settings
from service.config.sources import Sources
from service.queue import Queue, Record
from service.receiver.app import create_app
from tests.conftest import (
    emulator_state,
    provider_urls,
    running_worker,
    sources_from,
    wait_for_record,
)
from tests.mapping import PAYLOADS
from tests.receiver import signers

JSON = {"Content-Type": "application/json"}
APP_SECRET = "meta-app-secret-1"
VERIFY = "meta-verify-token"
PAGE_TOKEN = "EAAB-page-token-456"
HUBSPOT_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
CALENDLY_KEY = "calendly-signing-key"

SOURCES: dict[str, Any] = {
    "meta": {
        "kind": "webhook",
        "preset": "meta-lead-ads",
        "default_region": "US",
        "auth": {"secrets": ["env:META_APP_SECRET"], "verify_tokens": ["env:META_VERIFY"]},
        "hydrate": {"tokens": {"456": "env:META_PAGE_TOKEN"}, "token": "env:META_PAGE_TOKEN"},
    },
    "meta-thin": {
        "kind": "webhook",
        "preset": "meta-lead-ads",
        "auth": {"secrets": ["env:META_APP_SECRET"]},
    },
    "hubspot": {
        "kind": "webhook",
        "preset": "hubspot",
        "default_region": "US",
        "auth": {"secrets": ["env:HUBSPOT_SECRET"]},
        "hydrate": {"token": "env:HUBSPOT_TOKEN"},
    },
    "calendly": {
        "kind": "webhook",
        "preset": "calendly",
        "default_region": "US",
        "auth": {"secrets": ["env:CALENDLY_KEY"]},
        "hydrate": {"token": "env:CALENDLY_TOKEN"},
    },
    "website": {"kind": "form", "preset": "generic-form"},
}


@pytest.fixture
def hydrating(monkeypatch: pytest.MonkeyPatch) -> Sources:
    for name, value in {
        "META_APP_SECRET": APP_SECRET,
        "META_VERIFY": VERIFY,
        "META_PAGE_TOKEN": PAGE_TOKEN,
        "HUBSPOT_SECRET": HUBSPOT_SECRET,
        "HUBSPOT_TOKEN": "pat-na1-hubspot",
        "CALENDLY_KEY": CALENDLY_KEY,
        "CALENDLY_TOKEN": "calendly-pat",
    }.items():
        monkeypatch.setenv(name, value)
    return sources_from({"sources": SOURCES})


@pytest.fixture
def hsettings(make_settings: Callable[..., Settings], providers: TestServer) -> Settings:
    return make_settings(
        **provider_urls(providers),
        hydration_probe_seconds=0.3,
        hydration_not_found_retries=1,
    )


@asynccontextmanager
async def door(
    settings: Settings, sources: Sources, redis: Redis
) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(settings, sources, redis=redis)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def post_meta(client: TestClient[Any, Any], body: bytes, source: str = "meta") -> Any:
    """POST ``body`` signed as Meta signs it."""
    headers = {**JSON, **signers.meta(APP_SECRET, body)}
    return await client.post(f"/hooks/{source}", data=body, headers=headers)


def raw(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def people(emulator: TestServer) -> dict[str, str]:
    """Email -> lead name, for every lead in the Close emulator."""
    out = {}
    for lead in emulator_state(emulator).leads.values():
        for contact in lead.get("contacts", []):
            for email in contact.get("emails", []):
                out[email["email"]] = lead["name"]
    return out


async def test_meta_handshake_answers_the_challenge_only_for_the_token(
    hsettings: Settings, hydrating: Sources, redis: Redis
) -> None:
    async with door(hsettings, hydrating, redis) as client:
        query = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": VERIFY}
        ok = await client.get("/hooks/meta", params=query)
        assert (ok.status, await ok.text()) == (200, "1158201444")
        wrong = await client.get("/hooks/meta", params={**query, "hub.verify_token": "nope"})
        assert wrong.status == 403
        assert (await wrong.json(content_type=None))["type"].endswith(":handshake-refused")
        unsubscribe = await client.get("/hooks/meta", params={**query, "hub.mode": "other"})
        assert unsubscribe.status == 403
        # A source without a handshake keeps answering a GET with 405.
        assert (await client.get("/hooks/website")).status == 405


async def test_multi_change_meta_post_makes_one_lead_per_leadgen_id(
    hsettings: Settings,
    hydrating: Sources,
    redis: Redis,
    queue: Queue,
    emulator: TestServer,
    providers: TestServer,
) -> None:
    body = raw("meta-lead-ads-batch.json")
    async with door(hsettings, hydrating, redis) as client:
        unsigned = await client.post("/hooks/meta", data=body, headers=JSON)
        assert unsigned.status == 401
        answer = await client.post(
            "/hooks/meta", data=body, headers={**JSON, **signers.meta(APP_SECRET, body)}
        )
        assert answer.status == 202, await answer.text()
        stored = await answer.json()
        assert stored["status"] == "queued"
        assert [row["status"] for row in stored["submissions"]] == ["queued", "queued"]
        again = await client.post(
            "/hooks/meta", data=body, headers={**JSON, **signers.meta(APP_SECRET, body)}
        )
        assert again.status == 200  # Meta redelivers: recognised by each leadgen_id
        assert (await again.json())["duplicate"] is True
    ids = [row["id"] for row in stored["submissions"]]
    async with running_worker(hsettings, hydrating, redis):
        records = [await wait_for_record(queue, sub_id) for sub_id in ids]
    found = people(emulator)
    assert found["avery.jones@example.com"] == "Avery Jones"
    assert len(emulator_state(emulator).leads) == 2  # Casey Lee has only a phone
    assert {r.delivery_key for r in records} == {"event-id"}
    assert records[0].fetched["request"].startswith("GET ")
    assert "access_token" not in records[0].fetched["request"]
    assert records[1].fetched["body"]["id"] == "125"
    graph = providers.app[PROVIDER_STATE].requests_to("meta")
    assert sorted(r.path.rsplit("/", 1)[1] for r in graph) == ["124", "125"]
    assert all(r.token == PAGE_TOKEN for r in graph)


async def test_the_documented_meta_lead_becomes_the_right_lead(
    hsettings: Settings, hydrating: Sources, redis: Redis, queue: Queue, emulator: TestServer
) -> None:
    body = raw("meta-lead-ads.json")
    async with door(hsettings, hydrating, redis) as client:
        [row] = (await (await post_meta(client, body)).json())["submissions"]
    async with running_worker(hsettings, hydrating, redis):
        record = await wait_for_record(queue, row["id"])
    lead = emulator_state(emulator).leads[record.lead_id or ""]
    assert lead["name"] == "Smith Roofing"
    [contact] = lead["contacts"]
    assert contact["name"] == "Jordan Smith"
    assert [p["phone"] for p in contact["phones"]] == ["+14155552671"]
    steps = [h["detail"].get("step") for h in record.history if h.get("detail")]
    assert steps.index("fetched") < steps.index("lead created")


async def test_a_replay_maps_what_was_fetched_without_asking_again(
    hsettings: Settings,
    hydrating: Sources,
    redis: Redis,
    queue: Queue,
    emulator: TestServer,
    providers: TestServer,
) -> None:
    body = raw("meta-lead-ads.json")
    async with door(hsettings, hydrating, redis) as client:
        [row] = (await (await post_meta(client, body)).json())["submissions"]
    async with running_worker(hsettings, hydrating, redis):
        first = await wait_for_record(queue, row["id"])
        providers.app[PROVIDER_STATE].objects["meta"].clear()  # Meta deleted the lead since
        assert await queue.records.replay(row["id"]) == "replayed"
        again = await _until(
            queue, row["id"], lambda r: r.replayed_at is not None and r.state == "created"
        )
    assert again.lead_id == first.lead_id  # kept by the replay, not made twice
    assert again.fetched == first.fetched
    assert len(providers.app[PROVIDER_STATE].requests_to("meta")) == 1
    assert len(emulator_state(emulator).leads) == 1


async def test_an_expired_meta_token_pauses_the_source_and_loses_nothing(
    hsettings: Settings,
    hydrating: Sources,
    redis: Redis,
    queue: Queue,
    emulator: TestServer,
    providers: TestServer,
) -> None:
    graph = providers.app[PROVIDER_STATE]
    graph.expire_token("meta", PAGE_TOKEN)
    body = raw("meta-lead-ads.json")
    async with door(hsettings, hydrating, redis) as client:
        [row] = (await (await post_meta(client, body)).json())["submissions"]
        async with running_worker(hsettings, hydrating, redis):
            record = await _until(queue, row["id"], lambda r: r.state == "retrying")
            assert record.last_error["reason"].startswith("hydration paused")
            ready = await client.get("/readyz")
            assert ready.status == 200  # still accepting: the submissions wait
            assert "meta" in (await ready.json())["hydration"]
            metrics = await (await client.get("/metrics")).text()
            assert 'intake_delivery_paused{reason="hydration:meta"} 1.0' in metrics
            await asyncio.sleep(1.0)  # several probe intervals while paused
            waiting = await queue.records.get(row["id"])
            assert waiting is not None and waiting.state in ("retrying", "processing")
            assert waiting.attempts <= 1  # a pause uses up no attempt
            graph.renew_token("meta", PAGE_TOKEN)
            record = await wait_for_record(queue, row["id"], within=10)
        ready = await client.get("/readyz")
        assert "hydration" not in await ready.json()
    assert emulator_state(emulator).leads[record.lead_id or ""]["name"] == "Smith Roofing"
    assert record.attempts == 1
    refused = [r for r in graph.requests_to("meta") if r.status == 400]
    assert 1 <= len(refused) <= 6  # one probe per interval, not one per worker task


async def test_a_meta_lead_without_hydration_is_rejected_saying_so(
    hsettings: Settings, hydrating: Sources, redis: Redis, queue: Queue
) -> None:
    body = raw("meta-lead-ads.json")
    async with door(hsettings, hydrating, redis) as client:
        answer = await client.post(
            "/hooks/meta-thin", data=body, headers={**JSON, **signers.meta(APP_SECRET, body)}
        )
        assert answer.status == 202  # Meta must get a 2xx; the record says why
        [row] = (await answer.json())["submissions"]
    async with running_worker(hsettings, hydrating, redis):
        record = await wait_for_record(queue, row["id"], ("rejected",))
    assert record.last_error["code"] == "ids-only"
    assert record.history[-1]["detail"]["code"] == "ids-only"
    assert "configure hydration" in record.last_error["reason"]


async def test_a_lead_meta_never_has_ends_dead_not_found(
    hsettings: Settings, hydrating: Sources, redis: Redis, queue: Queue
) -> None:
    body = raw("meta-lead-ads.json").replace(b'"leadgen_id": 123', b'"leadgen_id": 999')
    async with door(hsettings, hydrating, redis) as client:
        [row] = (await (await post_meta(client, body)).json())["submissions"]
    async with running_worker(hsettings, hydrating, redis):
        record = await wait_for_record(queue, row["id"], ("dead",), within=15)
    assert record.last_error.get("code") == "not-found", (record.last_error, record.history)
    assert record.attempts == 2  # hydration_not_found_retries=1, then dead


async def test_a_hubspot_array_of_three_events_makes_three_leads(
    hsettings: Settings,
    hydrating: Sources,
    redis: Redis,
    queue: Queue,
    emulator: TestServer,
    providers: TestServer,
) -> None:
    body = raw("hubspot-batch.json")
    async with door(hsettings, hydrating, redis) as client:
        answer = await client.post(
            "/hooks/hubspot",
            data=body,
            headers={**JSON, **signers.hubspot_v1(HUBSPOT_SECRET, body)},
        )
        assert answer.status == 202, await answer.text()
        rows = (await answer.json())["submissions"]
    assert len(rows) == 3
    async with running_worker(hsettings, hydrating, redis):
        for row in rows:
            await wait_for_record(queue, row["id"])
    assert people(emulator) == {
        "bh@hubspot.com": "HubSpot",
        "maria.garcia@example.com": "Maria Garcia",
        "dev.patel@example.com": "Dev Patel",
    }
    crm = providers.app[PROVIDER_STATE].requests_to("hubspot")
    assert {r.token for r in crm} == {"pat-na1-hubspot"}
    assert all("properties=email" in r.query for r in crm)


async def test_hubspot_documented_v1_example_and_a_rate_limit(
    hsettings: Settings,
    hydrating: Sources,
    redis: Redis,
    queue: Queue,
    emulator: TestServer,
    providers: TestServer,
) -> None:
    body = raw("hubspot.json")
    signed = signers.hubspot_v1(HUBSPOT_SECRET, body)
    # HubSpot's docs give this example's v1 hash.
    assert signed["X-HubSpot-Signature"].startswith("232db2615f3d666f")
    crm = providers.app[PROVIDER_STATE]
    crm.add_fault(
        ProviderFault(
            "hubspot",
            429,
            {"status": "error", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"},
            {"Retry-After": "0.4"},
        )
    )
    async with door(hsettings, hydrating, redis) as client:
        answer = await client.post("/hooks/hubspot", data=body, headers={**JSON, **signed})
        [row] = (await answer.json())["submissions"]
    async with running_worker(hsettings, hydrating, redis):
        record = await wait_for_record(queue, row["id"], within=10)
    assert people(emulator) == {"bh@hubspot.com": "HubSpot"}
    assert record.attempts == 1  # the rate limit was waited out, not counted
    assert [r.status for r in crm.requests_to("hubspot")] == [429, 200]
    assert any("rate limit" in str(h.get("detail", {})) for h in record.history)


async def test_calendly_routing_form_fetches_its_submitter_or_says_it_has_nobody(
    hsettings: Settings, hydrating: Sources, redis: Redis, queue: Queue, emulator: TestServer
) -> None:
    ids = []
    async with door(hsettings, hydrating, redis) as client:
        for name in ("calendly-routing.json", "calendly-routing-nobody.json"):
            body = raw(name)
            answer = await client.post(
                "/hooks/calendly",
                data=body,
                headers={
                    **JSON,
                    **signers.stripe_style(CALENDLY_KEY, body, "Calendly-Webhook-Signature"),
                },
            )
            assert answer.status == 202, await answer.text()
            ids.append((await answer.json())["id"])
    async with running_worker(hsettings, hydrating, redis):
        booked = await wait_for_record(queue, ids[0])
        nobody = await wait_for_record(queue, ids[1], ("rejected",))
    lead = emulator_state(emulator).leads[booked.lead_id or ""]
    assert lead["name"] == "Acme Inc"
    assert lead["contacts"][0]["emails"][0]["email"] == "test@example.com"
    assert nobody.last_error["code"] == "no-person"
    assert "names no person to fetch" in nobody.last_error["reason"]


async def _until(
    queue: Queue, sub_id: str, ok: Callable[[Record], bool], within: float = 10
) -> Record:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        record = await queue.records.get(sub_id)
        if record is not None and ok(record):
            return record
        await asyncio.sleep(0.02)
    raise AssertionError(f"{sub_id} never got there: {await queue.records.get(sub_id)}")
