"""Poison in the pipeline: stream entries that are corrupt or name nothing, records that cannot
be read, payloads whose mapping fails and bodies Close refuses. Each ends rejected or dead with
its reason (or, when there is nothing to finish, is dropped), is never retried forever, and the
worker keeps going: the next good submission still becomes a lead."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from service.config.settings import Settings
from service.config.sources import Sources
from service.dev.redis_server import RedisServer
from service.keys import GROUP, Keys
from service.queue import Queue
from service.queue.records import FINAL_STATES
from tests.conftest import emulator_state, enqueue, running_worker, sources_from, wait_for_record

pytestmark = pytest.mark.usefixtures("captured_logs")

DONE = tuple(FINAL_STATES)


async def drained(redis: Redis, keys: Keys, within: float = 10.0) -> dict[str, int]:
    """Wait until the stream is empty and nothing is pending; what is left otherwise."""
    deadline = time.monotonic() + within
    while True:
        left = {
            "entries": int(await redis.xlen(keys.stream)),
            "pending": int((await redis.xpending(keys.stream, GROUP))["pending"]),
        }
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.05)


def person(n: int) -> dict[str, Any]:
    return {"contact": {"name": f"Good Person {n}", "email": f"good{n}@example.com"}}


async def test_corrupt_and_unknown_stream_entries_are_dropped_and_work_goes_on(
    queue: Queue,
    settings: Settings,
    sources: Sources,
    redis: Redis,
    redis_server: RedisServer,
    keys: Keys,
    emulator: TestServer,
) -> None:
    raw = Redis.from_url(redis_server.url)  # bytes in, bytes out: what another program might add
    try:
        await raw.xadd(keys.stream, {b"garbage": b"1"})  # no submission id at all
        await raw.xadd(keys.stream, {b"sub": b"sub_00000000000000000000000000", b"source": b"x"})
        await raw.xadd(keys.stream, {b"sub": b"\xff\xfe\x00bad", b"source": b"\xc3"})  # not UTF-8
    finally:
        await raw.aclose()
    good = await enqueue(queue, person(1))
    # The worker's own client, made as in production (redis_from_url), not the test's.
    async with running_worker(settings, sources, None) as worker:  # type: ignore[arg-type]
        record = await wait_for_record(queue, good, ("created",))
        assert await drained(redis, keys) == {"entries": 0, "pending": 0}
        later = await enqueue(queue, person(2))  # still working after the poison
        assert (await wait_for_record(queue, later, ("created",))).state == "created"
        assert worker.ready.is_set()
    assert record.attempts == 1
    # Nothing was invented for the entries that named no submission.
    assert await redis.exists(keys.sub("sub_00000000000000000000000000")) == 0
    assert len(emulator_state(emulator).leads) == 2


async def test_a_corrupt_envelope_ends_rejected_with_its_reason(
    queue: Queue, settings: Settings, sources: Sources, redis: Redis, keys: Keys
) -> None:
    broken = await enqueue(queue, person(3))
    await redis.hset(keys.sub(broken), "envelope", "{not json")
    good = await enqueue(queue, person(4))
    async with running_worker(settings, sources, redis):
        record = await wait_for_record(queue, broken, DONE)
        assert (await wait_for_record(queue, good, DONE)).state == "created"
        left = await drained(redis, keys)
    assert record.state == "rejected" and record.attempts == 1
    assert record.history[-1]["detail"]["reason"] == "corrupt envelope"
    assert left == {"entries": 0, "pending": 0}


async def test_a_record_that_cannot_be_read_is_not_retried_forever(
    queue: Queue, make_settings: Any, sources: Sources, redis: Redis, keys: Keys
) -> None:
    broken = await enqueue(queue, person(5))
    await redis.hset(keys.sub(broken), mapping={"attempts": "many", "received_at": "?"})
    good = await enqueue(queue, person(6))
    settings = make_settings(visibility_timeout_seconds=1.0)
    async with running_worker(settings, sources, redis):
        assert (await wait_for_record(queue, good, DONE)).state == "created"
        left = await drained(redis, keys, within=4)  # several visibility timeouts
    assert left == {"entries": 0, "pending": 0}, "the unreadable record's entry is retried"
    assert [e["sub"] for _, e in await redis.xrange(keys.dead)] == [broken]


async def test_a_failing_mapping_expression_ends_rejected_with_its_reason(
    queue: Queue, settings: Settings, redis: Redis, emulator: TestServer
) -> None:
    sources = sources_from(
        {
            "sources": {
                "tags": {
                    "kind": "webhook",
                    "extract": {"email": "body.email", "extra.tags": "join(', ', body.tags)"},
                }
            }
        }
    )
    bad = await enqueue(queue, {"email": "tags@example.com", "tags": "one string"}, "tags")
    good = await enqueue(queue, {"email": "tags2@example.com", "tags": ["a", "b"]}, "tags")
    async with running_worker(settings, sources, redis):
        rejected = await wait_for_record(queue, bad, DONE)
        created = await wait_for_record(queue, good, DONE)
    assert rejected.state == "rejected" and rejected.attempts == 1
    reason = str(rejected.history[-1]["detail"])
    assert "join(', ', body.tags)" in reason or "extra.tags" in reason, reason
    assert created.state == "created"
    assert len(emulator_state(emulator).leads_with_email("tags@example.com")) == 0


async def test_a_body_close_refuses_ends_dead_once_with_closes_answer(
    queue: Queue, settings: Settings, redis: Redis, keys: Keys, emulator: TestServer
) -> None:
    # A text custom field given a number: the mapping passes it on, Close answers 400.
    sources = sources_from(
        {
            "sources": {
                "ids": {
                    "kind": "webhook",
                    "extract": {"email": "body.email", "extra.ref": "body.ref"},
                    "lead": {"custom": {"External ID": "extra.ref"}},
                }
            }
        }
    )
    bad = await enqueue(queue, {"email": "ref@example.com", "ref": 42}, "ids")
    good = await enqueue(queue, {"email": "ref2@example.com", "ref": "A-42"}, "ids")
    async with running_worker(settings, sources, redis):
        dead = await wait_for_record(queue, bad, DONE)
        created = await wait_for_record(queue, good, DONE)
        left = await drained(redis, keys)
    assert dead.state == "dead" and dead.attempts == 1  # permanent: not retried
    assert dead.last_error["status"] == 400
    assert "Must be a string" in str(dead.close_response)
    assert [e for _, e in await redis.xrange(keys.dead)] == [{"sub": bad, "source": "ids"}]
    assert created.state == "created"
    assert left == {"entries": 0, "pending": 0}
    state = emulator_state(emulator)
    assert not state.leads_with_email("ref@example.com")
    assert len(state.leads_with_email("ref2@example.com")) == 1


async def test_a_source_removed_from_the_config_ends_dead_with_the_reason(
    queue: Queue, settings: Settings, sources: Sources, redis: Redis, keys: Keys
) -> None:
    orphan = await enqueue(queue, person(6), "retired-source")
    async with running_worker(settings, sources, redis):
        record = await wait_for_record(queue, orphan, DONE)
        left = await drained(redis, keys)
    assert record.state == "dead" and record.attempts == 1
    assert "no longer configured" in record.history[-1]["detail"]["reason"]
    assert left == {"entries": 0, "pending": 0}
