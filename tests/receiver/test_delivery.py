"""Delivery idempotency at the door: one submission per delivery, however often it is sent."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.config.settings import Settings
from service.envelope import Envelope
from service.keys import Keys
from service.receiver.app import create_app
from service.receiver.delivery import delivery_key
from tests.conftest import ROOT, sources_from

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def post(client: TestClient[Any, Any], path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post(path, **kw)
    return response.status, await response.json()


async def test_idempotency_key_repeat_answers_200_with_first_id(
    client: TestClient[Any, Any], redis: Redis, keys: Keys
) -> None:
    headers = {"Idempotency-Key": "order-77"}
    status, first = await post(
        client,
        "/hooks/partner",
        json={"contact": {"email": "a@example.com"}, "a": 1},
        headers=headers,
    )
    assert status == 202
    status, again = await post(
        client,
        "/hooks/partner",
        json={"contact": {"email": "a@example.com"}, "a": 2},
        headers=headers,
    )
    assert status == 200
    assert again == {"id": first["id"], "duplicate": True}
    assert await redis.xlen(keys.stream) == 1


async def test_webhook_id_header_is_the_delivery(
    client: TestClient[Any, Any], redis: Redis, keys: Keys
) -> None:
    a = await post(
        client,
        "/hooks/partner",
        json={"contact": {"email": "x@example.com"}},
        headers={"webhook-id": "msg_1"},
    )
    b = await post(
        client,
        "/hooks/partner",
        json={"contact": {"email": "x@example.com"}},
        headers={"webhook-id": "msg_1"},
    )
    c = await post(
        client,
        "/hooks/partner",
        json={"contact": {"email": "x@example.com"}},
        headers={"webhook-id": "msg_2"},
    )
    assert [a[0], b[0], c[0]] == [202, 200, 202]
    assert b[1]["id"] == a[1]["id"] != c[1]["id"]


async def test_same_key_on_two_sources_is_two_deliveries(client: TestClient[Any, Any]) -> None:
    headers = {"Idempotency-Key": "k"}
    a = await post(
        client, "/hooks/partner", json={"contact": {"email": "a@example.com"}}, headers=headers
    )
    b = await post(client, "/hooks/website", json={"email": "a@example.com"}, headers=headers)
    assert (a[0], b[0]) == (202, 202)


async def test_preset_event_id_recognises_a_provider_retry(
    settings: Settings, redis: Redis
) -> None:
    sources = sources_from({"sources": {"tf": {"kind": "webhook", "preset": "typeform"}}})
    payload = json.loads((ROOT / "tests/mapping/payloads/typeform.json").read_text())
    async with TestClient(TestServer(create_app(settings, sources, redis=redis))) as client:
        first = await post(client, "/hooks/tf", json=payload)
        retry = await post(client, "/hooks/tf", json=payload)
        other = dict(payload, event_id="another-event")
        third = await post(client, "/hooks/tf", json=other)
    assert (first[0], retry[0], third[0]) == (202, 200, 202)
    assert retry[1]["id"] == first[1]["id"]


async def test_form_double_submit_within_the_window_is_one_submission(
    client: TestClient[Any, Any], redis: Redis, keys: Keys
) -> None:
    body = "name=Ann+Lee&email=ann%40example.com&cf-turnstile-response=token-1"
    # Same fields, whitespace and a fresh CAPTCHA token: still the same submission.
    again = "email=ann%40example.com+&name=Ann+Lee&cf-turnstile-response=token-2"
    first = await post(client, "/hooks/website", data=body, headers=FORM)
    second = await post(client, "/hooks/website", data=again, headers=FORM)
    different = await post(
        client, "/hooks/website", data="name=Bo&email=bo%40example.com", headers=FORM
    )
    assert (first[0], second[0], different[0]) == (202, 200, 202)
    assert second[1]["id"] == first[1]["id"]
    assert await redis.xlen(keys.stream) == 2


async def test_body_window_expires(settings: Settings, redis: Redis) -> None:
    sources = sources_from(
        {
            "sources": {
                "site": {
                    "kind": "form",
                    "preset": "generic-form",
                    "dedup": {"body_window_seconds": 1},
                }
            }
        }
    )
    async with TestClient(TestServer(create_app(settings, sources, redis=redis))) as client:
        body = "email=cy%40example.com"
        assert (await post(client, "/hooks/site", data=body, headers=FORM))[0] == 202
        assert (await post(client, "/hooks/site", data=body, headers=FORM))[0] == 200
        await asyncio.sleep(1.2)
        assert (await post(client, "/hooks/site", data=body, headers=FORM))[0] == 202


async def test_body_hash_can_be_switched_off(settings: Settings, redis: Redis) -> None:
    sources = sources_from(
        {
            "sources": {
                "site": {
                    "kind": "form",
                    "preset": "generic-form",
                    "dedup": {"body_window_seconds": 0},
                }
            }
        }
    )
    async with TestClient(TestServer(create_app(settings, sources, redis=redis))) as client:
        statuses = [
            (await post(client, "/hooks/site", data="email=d%40example.com", headers=FORM))[0]
            for _ in range(2)
        ]
    assert statuses == [202, 202]


async def test_concurrent_repeats_at_the_door_queue_one(
    client: TestClient[Any, Any], redis: Redis, keys: Keys
) -> None:
    results = await asyncio.gather(
        *(
            post(
                client,
                "/hooks/partner",
                json={"contact": {"email": "n@example.com"}, "n": i},
                headers={"Idempotency-Key": "burst"},
            )
            for i in range(20)
        )
    )
    assert sorted(status for status, _ in results) == [200] * 19 + [202]
    assert len({answer["id"] for _, answer in results}) == 1
    assert await redis.xlen(keys.stream) == 1


def test_a_form_bodys_hash_is_the_same_across_versions() -> None:
    # A repeat sent across an upgrade is still recognised: the digest is that of the sorted,
    # compact JSON of the trimmed fields, as it always was.
    sources = sources_from({"sources": {"site": {"kind": "form", "preset": "generic-form"}}})
    source = sources.get("site")
    assert source is not None
    body = {"name": " Zoë ", "email": "z@example.com", "empty": "", "a": ["x", "y"]}
    envelope = Envelope(
        id="sub_1", source="site", received_at=time.time(), content_type="x", body=body
    )
    key = delivery_key(source, None, {}, envelope)
    expected = json.dumps(
        {"a": ["x", "y"], "email": "z@example.com", "name": "Zoë"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert key is not None and key.kind == "body-hash"
    assert key.digest == hashlib.sha256(f"body\x1f{expected}".encode()).hexdigest()[:40]
