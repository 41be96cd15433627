"""Redis trouble: unreachable at the door, gone while a worker processes, and back without its
data (a restart without persistence, a deleted consumer group). The service answers 503 while
Redis is away, keeps nothing half-written, waits and resumes without losing what Redis kept,
and recreates the stream and group it needs instead of failing with NOGROUP forever.

(tests/receiver/test_hooks.py covers the 503 itself and a Redis refusing writes.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from close_emulator import EmulatorState
from service.config.settings import Settings
from service.config.sources import Sources
from service.dev.redis_server import RedisServer
from service.keys import GROUP, Keys
from service.queue import Queue
from service.queue.records import FINAL_STATES
from service.receiver.app import create_app
from tests.conftest import ADMIN_TOKEN, emulator_state, running_worker, wait_for_record
from tests.reliability.logcapture import CapturedLogs

pytestmark = pytest.mark.usefixtures("captured_logs")

DONE = tuple(FINAL_STATES)


@asynccontextmanager
async def private_redis(*, appendonly: bool) -> AsyncIterator[RedisServer]:
    """A private redis-server this test may stop and start."""
    server = RedisServer(appendonly=appendonly)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    """With AOF (everysec): a restart keeps what was written."""
    async with private_redis(appendonly=True) as server:
        yield server


@pytest.fixture
async def redis_without_persistence() -> AsyncIterator[RedisServer]:
    """Without AOF or snapshots: a restart comes back empty."""
    async with private_redis(appendonly=False) as server:
        yield server


async def restart(server: RedisServer, away: float = 0.0) -> None:
    """Stop redis-server and start it again on the same port and folder."""
    await asyncio.to_thread(server.stop, remove=False)
    await asyncio.sleep(away)
    await asyncio.to_thread(server.start)


async def post_until_accepted(
    client: TestClient[Any, Any], body: dict[str, Any], key: str, within: float = 15.0
) -> tuple[str, list[int]]:
    """Send like a partner: the same delivery (same Idempotency-Key) until a 2xx."""
    statuses: list[int] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        response = await client.post("/hooks/partner", json=body, headers={"Idempotency-Key": key})
        statuses.append(response.status)
        if response.status in (200, 202):
            return str((await response.json())["id"]), statuses
        assert response.status == 503, await response.text()
        await asyncio.sleep(0.1)
    raise AssertionError(f"never accepted: {statuses}")


async def ready_status(client: TestClient[Any, Any], want: int, within: float = 10.0) -> int:
    deadline = time.monotonic() + within
    status = 0
    while time.monotonic() < deadline:
        status = (await client.get("/readyz")).status
        if status == want:
            break
        await asyncio.sleep(0.05)
    return status


async def leads_at_least(state: EmulatorState, count: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while len(state.leads) < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    assert len(state.leads) >= count


def person(n: int) -> dict[str, Any]:
    return {"contact": {"name": f"Redis Trouble {n}", "email": f"rt{n}@example.com"}}


async def test_redis_down_at_the_door_then_back_accepts_what_was_refused(
    own_redis: RedisServer, make_settings: Callable[..., Settings], sources: Sources, keys: Keys
) -> None:
    settings = make_settings(redis_url=own_redis.url)
    async with TestClient(TestServer(create_app(settings, sources))) as client:
        first, _ = await post_until_accepted(client, person(1), "k1")
        await asyncio.to_thread(own_redis.stop, remove=False)
        down = await client.post(
            "/hooks/partner", json=person(2), headers={"Idempotency-Key": "k2"}
        )
        assert down.status == 503
        assert (await client.get("/readyz")).status == 503
        await asyncio.to_thread(own_redis.start)
        second, _ = await post_until_accepted(client, person(2), "k2")
        assert await ready_status(client, 200) == 200
    admin = Redis.from_url(own_redis.url, decode_responses=True)
    try:
        # Kept across the restart (AOF); the refused delivery is there exactly once.
        records = await Queue(admin, keys, record_ttl=3600).index.records([first, second])
        assert [r.state if r else None for r in records] == ["queued", "queued"]
        assert await admin.xlen(keys.stream) == 2
    finally:
        await admin.aclose()


async def test_redis_gone_while_a_worker_processes_then_back_loses_nothing(
    own_redis: RedisServer,
    make_settings: Callable[..., Settings],
    sources: Sources,
    keys: Keys,
    emulator: TestServer,
    captured_logs: CapturedLogs,
) -> None:
    state = emulator_state(emulator)
    state.configure(latency_ms=30)  # Close calls take a while: work is in flight
    settings = make_settings(redis_url=own_redis.url, worker_concurrency=8, auth_probe_seconds=0.2)
    async with TestClient(TestServer(create_app(settings, sources))) as client:
        ids = [(await post_until_accepted(client, person(10 + n), f"g{n}"))[0] for n in range(40)]
        # The worker's own client, as in production (redis_from_url).
        async with running_worker(settings, sources, None) as worker:  # type: ignore[arg-type]
            await leads_at_least(state, 5)
            await restart(own_redis, away=1.5)  # several probe and read intervals
            queue = Queue(
                Redis.from_url(own_redis.url, decode_responses=True), keys, record_ttl=3600
            )
            try:
                records = [await wait_for_record(queue, i, DONE, within=30) for i in ids]
            finally:
                await queue.redis.aclose()
            assert worker.ready.is_set()
        more, _ = await post_until_accepted(client, person(99), "after")
    # Work cut off by the outage resumes from its recorded progress: a create whose record
    # could not be written is found again (attached), never made twice.
    assert {r.state for r in records} <= {"created", "attached"}
    for n in range(40):
        assert len(state.leads_with_email(f"rt{10 + n}@example.com")) == 1
    assert more
    assert "Redis" in captured_logs.text  # it said what was wrong while it waited


async def test_redis_back_without_its_data_gets_a_new_stream_and_group(
    redis_without_persistence: RedisServer,
    make_settings: Callable[..., Settings],
    sources: Sources,
    keys: Keys,
    emulator: TestServer,
) -> None:
    state = emulator_state(emulator)
    server = redis_without_persistence
    settings = make_settings(redis_url=server.url)
    app = create_app(settings, sources)
    async with TestClient(TestServer(app)) as client, running_worker(settings, sources, None):  # type: ignore[arg-type]
        before, _ = await post_until_accepted(client, person(20), "before")
        async with Redis.from_url(server.url, decode_responses=True) as admin:
            await wait_for_record(Queue(admin, keys, record_ttl=3600), before, ("created",))
        await restart(server)  # comes back empty: no stream, no group
        async with Redis.from_url(server.url, decode_responses=True) as admin:
            assert await admin.exists(keys.sub(before)) == 0  # it really came back empty
            # The receiver stores again at once; the worker recreates the group it reads.
            after, _ = await post_until_accepted(client, person(21), "after")
            queue = Queue(admin, keys, record_ttl=3600)
            record = await wait_for_record(queue, after, ("created",), within=15)
            assert await ready_status(client, 200) == 200
            ready = await (await client.get("/readyz")).json()
            groups = await admin.xinfo_groups(keys.stream)
    assert record.lead_id in state.leads
    assert [g["name"] for g in groups] == [GROUP]
    assert any("AOF is off" in w for w in ready.get("warnings", []))


async def test_a_deleted_consumer_group_is_recreated_and_nothing_is_lost(
    own_redis: RedisServer,
    make_settings: Callable[..., Settings],
    sources: Sources,
    keys: Keys,
    emulator: TestServer,
) -> None:
    state = emulator_state(emulator)
    state.configure(latency_ms=20)
    settings = make_settings(redis_url=own_redis.url, worker_concurrency=4)
    app = create_app(settings, sources)
    async with (
        Redis.from_url(own_redis.url, decode_responses=True) as admin,
        TestClient(TestServer(app)) as client,
        running_worker(settings, sources, None),  # type: ignore[arg-type]
    ):
        queue = Queue(admin, keys, record_ttl=3600)
        ids = [(await post_until_accepted(client, person(30 + n), f"d{n}"))[0] for n in range(20)]
        await leads_at_least(state, 3)
        await admin.xgroup_destroy(keys.stream, GROUP)  # pending list and all
        records = [await wait_for_record(queue, i, DONE, within=20) for i in ids]
        assert await ready_status(client, 200) == 200
    # The recreated group hands out every entry still in the stream again: the ones in flight
    # are finished once more (attached to their own lead), never made twice.
    assert {r.state for r in records} <= {"created", "attached"}
    for n in range(20):
        assert len(state.leads_with_email(f"rt{30 + n}@example.com")) == 1


async def test_after_a_redis_restart_every_request_gets_its_2xx(
    own_redis: RedisServer, make_settings: Callable[..., Settings], sources: Sources, keys: Keys
) -> None:
    """Pooled connections from before a restart died with the server: the first command on
    each is retried on a new connection, so no request after Redis is back gets a 503."""
    settings = make_settings(redis_url=own_redis.url)
    token = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def burst(tag: str, count: int = 32) -> list[int]:
        posts = [
            client.post(
                "/hooks/partner", json=person(200 + n), headers={"Idempotency-Key": f"{tag}{n}"}
            )
            for n in range(count)
        ]
        reads = [client.get("/v1/counts", headers=token) for _ in range(count)]
        answers = await asyncio.gather(*posts, *reads, client.get("/readyz"))
        return [a.status for a in answers]

    async with TestClient(TestServer(create_app(settings, sources))) as client:
        await post_until_accepted(client, person(199), "warm")
        assert set(await burst("a")) <= {200, 202}  # many pooled connections now
        await asyncio.to_thread(own_redis.stop, remove=False)
        await asyncio.to_thread(own_redis.start)  # back (start returns once it answers PING)
        statuses = await burst("b")
        assert [s for s in statuses if s not in (200, 202)] == [], statuses
        assert set(await burst("c")) <= {200, 202}


async def test_a_restart_without_persistence_is_reported_as_data_loss(
    redis_without_persistence: RedisServer,
    make_settings: Callable[..., Settings],
    sources: Sources,
    keys: Keys,
    captured_logs: CapturedLogs,
) -> None:
    """Redis comes back empty: CRITICAL in the log, counted in the metrics, and readiness,
    the admin API and the dashboard say when the data was lost."""
    server = redis_without_persistence
    settings = make_settings(redis_url=server.url)
    token = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with TestClient(TestServer(create_app(settings, sources))) as client:
        await post_until_accepted(client, person(40), "lost-1")
        before = await (await client.get("/readyz")).json()
        assert "data_lost_at" not in before
        await restart(server)  # comes back empty
        ready = await client.get("/readyz")
        assert ready.status == 200  # still ready: it accepts again (env dev here)
        lost_at = (await ready.json())["data_lost_at"]
        counts = await (await client.get("/v1/counts", headers=token)).json()
        assert counts["redis"]["data_lost_at"] == lost_at
        await client.post("/admin/login", data={"token": ADMIN_TOKEN})
        page = await (await client.get("/admin")).text()
        assert 'id="data-lost"' in page and lost_at in page
        metrics = await (await client.get("/metrics")).text()
        await post_until_accepted(client, person(41), "lost-2")  # the door works again
    assert "intake_redis_data_losses_total 1.0" in metrics
    critical = [line for line in captured_logs.text.splitlines() if '"level": "critical"' in line]
    assert len(critical) == 1 and "WITHOUT its data" in critical[0]


async def test_in_production_the_door_refuses_while_redis_keeps_nothing(
    redis_without_persistence: RedisServer,
    make_settings: Callable[..., Settings],
    sources: Sources,
) -> None:
    server = redis_without_persistence
    body, key = person(50), {"Idempotency-Key": "volatile"}
    settings = make_settings(redis_url=server.url, env="production")
    async with TestClient(TestServer(create_app(settings, sources))) as client:
        refused = await client.post("/hooks/partner", json=body, headers=key)
        assert refused.status == 503
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert "no persistence" in (await ready.json())["detail"]
        async with Redis.from_url(server.url, decode_responses=True) as admin:
            await admin.config_set("appendonly", "yes")  # persistence turned on: accepted
            await asyncio.sleep(0.2)
            assert (await client.get("/readyz")).status == 200
            assert (await client.post("/hooks/partner", json=body, headers=key)).status == 202
    allowed = make_settings(redis_url=server.url, env="production", allow_volatile_redis=True)
    async with (
        Redis.from_url(server.url, decode_responses=True) as admin,
        TestClient(TestServer(create_app(allowed, sources))) as client,
    ):
        await admin.config_set("appendonly", "no")
        assert (await client.get("/readyz")).status == 200
        other = {"Idempotency-Key": "volatile-allowed"}
        assert (await client.post("/hooks/partner", json=body, headers=other)).status == 202
