"""The door: what POST /hooks/{source} and the health endpoints answer."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service import __version__
from service.config.sources import Sources
from service.dev.redis_server import RedisServer
from service.keys import GROUP, Keys
from service.queue import Queue
from service.receiver.app import create_app

PROBLEM = "application/problem+json"


async def problem_of(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body: dict[str, Any] = await response.json(content_type=PROBLEM)
    assert body["type"] == f"urn:lead-intake:problem:{slug}"
    assert body["status"] == status
    assert body["title"]
    return body


async def test_form_post_is_queued_with_record(
    client: TestClient[Any, Any], queue: Queue, redis: Redis, keys: Keys
) -> None:
    response = await client.post(
        "/hooks/website?utm_source=ads",
        data="name=Ann+Lee&email=ann%40example.com",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": "https://example.com/contact",
        },
    )
    assert response.status == 202
    answer = await response.json()
    assert answer["status"] == "queued" and answer["id"].startswith("sub_")
    [(_, fields)] = await redis.xrange(keys.stream)
    assert fields == {"sub": answer["id"], "source": "website"}
    record = await queue.records.get(answer["id"])
    assert record is not None and record.state == "queued"
    stored = json.loads(record.envelope or "")
    assert stored["body"] == {"name": "Ann Lee", "email": "ann@example.com"}
    assert stored["query"] == {"utm_source": "ads"}
    assert stored["headers"]["referer"] == "https://example.com/contact"
    assert stored["client_ip"] == "127.0.0.1"


async def test_json_post_is_queued(client: TestClient[Any, Any], redis: Redis, keys: Keys) -> None:
    response = await client.post("/hooks/partner", json={"contact": {"email": "bo@example.com"}})
    assert response.status == 202
    assert await redis.xlen(keys.stream) == 1


async def test_unknown_source_is_404(
    client: TestClient[Any, Any], redis: Redis, keys: Keys
) -> None:
    response = await client.post("/hooks/nope", json={})
    body = await problem_of(response, 404, "unknown-source")
    assert "nope" in body["detail"]
    assert await redis.exists(keys.stream) == 0 or await redis.xlen(keys.stream) == 0


async def test_malformed_json_is_400(
    client: TestClient[Any, Any], redis: Redis, keys: Keys
) -> None:
    response = await client.post(
        "/hooks/partner", data=b'{"email": ', headers={"Content-Type": "application/json"}
    )
    body = await problem_of(response, 400, "malformed-body")
    assert "invalid JSON" in body["detail"]
    assert await redis.xlen(keys.stream) == 0


async def test_other_content_type_is_415(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/hooks/website", data=b"hello", headers={"Content-Type": "text/plain"}
    )
    await problem_of(response, 415, "unsupported-media-type")


async def test_oversized_body_is_413_declared_or_streamed(
    make_settings: Any, sources: Sources, redis: Redis
) -> None:
    settings = make_settings(max_body_bytes=2048)
    async with TestClient(TestServer(create_app(settings, sources, redis=redis))) as client:
        big = b'{"x": "' + b"a" * 4096 + b'"}'
        response = await client.post(
            "/hooks/partner", data=big, headers={"Content-Type": "application/json"}
        )
        await problem_of(response, 413, "too-large")

        async def chunks() -> Any:  # no Content-Length: the limit holds while streaming
            for _ in range(10):
                yield b"a" * 1024

        response = await client.post(
            "/hooks/partner", data=chunks(), headers={"Content-Type": "application/json"}
        )
        await problem_of(response, 413, "too-large")
        small = await client.post(
            "/hooks/partner", json={"contact": {"email": "a@example.com"}, "a": "b" * 1000}
        )
        assert small.status == 202


async def test_wrong_method_is_405_problem(client: TestClient[Any, Any]) -> None:
    response = await client.get("/hooks/website")
    await problem_of(response, 405, "method-not-allowed")
    assert "POST" in response.headers["Allow"]


async def test_healthz_and_readyz(client: TestClient[Any, Any]) -> None:
    health = await client.get("/healthz")
    assert health.status == 200
    assert await health.json() == {"status": "ok", "version": __version__}
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["status"] == "ready"


async def test_redis_down_is_503_and_ready_fails(make_settings: Any, sources: Sources) -> None:
    server = RedisServer()
    server.start()
    settings = make_settings(redis_url=server.url)
    try:
        async with TestClient(TestServer(create_app(settings, sources))) as client:
            assert (
                await client.post(
                    "/hooks/partner", json={"contact": {"email": "a@example.com"}, "a": 1}
                )
            ).status == 202
            server.stop(remove=False)
            response = await client.post(
                "/hooks/partner", json={"contact": {"email": "a@example.com"}, "a": 2}
            )
            body = await problem_of(response, 503, "queue-unavailable")
            assert "not stored" in body["detail"]
            await problem_of(await client.get("/readyz"), 503, "not-ready")
            assert (await client.get("/healthz")).status == 200
    finally:
        server.stop()


async def test_redis_refusing_writes_leaves_nothing_half_written(
    make_settings: Any, sources: Sources, keys: Keys
) -> None:
    # A Redis out of memory (noeviction) refuses the enqueue script: the door answers 503 and
    # neither a record nor a stream entry exists afterwards.
    with RedisServer() as server:
        settings = make_settings(redis_url=server.url)
        admin: Redis = Redis.from_url(server.url, decode_responses=True)
        try:
            async with TestClient(TestServer(create_app(settings, sources))) as client:
                assert (
                    await client.post(
                        "/hooks/partner", json={"contact": {"email": "a@example.com"}, "a": 1}
                    )
                ).status == 202
                await admin.config_set("maxmemory-policy", "noeviction")
                await admin.config_set("maxmemory", "1")
                response = await client.post(
                    "/hooks/partner", json={"contact": {"email": "a@example.com"}, "a": 2}
                )
                await problem_of(response, 503, "queue-unavailable")
                await admin.config_set("maxmemory", "0")
                assert await admin.xlen(keys.stream) == 1
                subs = [k async for k in admin.scan_iter(match=keys.sub("*"))]
                assert len(subs) == 1
        finally:
            await admin.aclose()


async def test_readyz_recreates_a_deleted_group_without_calling_it_a_loss(
    client: TestClient[Any, Any], redis: Redis, keys: Keys
) -> None:
    await redis.xgroup_destroy(keys.stream, GROUP)
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert "data_lost_at" not in await ready.json()  # the data marker is still there
    assert [g["name"] for g in await redis.xinfo_groups(keys.stream)] == [GROUP]
