"""Group commit at the door: concurrent enqueues share round trips, each gets its own answer."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from service.dev.redis_server import RedisServer
from service.envelope import Envelope, new_submission_id
from service.keys import Keys
from service.queue import DeliveryKey, Queue
from service.queue.batching import READ_SIZE, NotReplicated, ScriptBatcher
from service.queue.lua import Script


def envelope(n: int) -> Envelope:
    return Envelope(
        id=new_submission_id(),
        source="website",
        received_at=time.time(),
        content_type="application/json",
        body={"email": f"b{n}@example.com"},
    )


@dataclass(frozen=True)
class NoKeys:
    pass


@dataclass(frozen=True)
class Word:
    word: str


async def test_concurrent_enqueues_share_writes_and_each_is_stored(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    store = queue.intake._store
    await queue.intake.enqueue(envelope(-1))  # connected
    before = store.writes
    envelopes = [envelope(n) for n in range(200)]
    results = await asyncio.gather(*(queue.intake.enqueue(e) for e in envelopes))
    assert results == [(e.id, True) for e in envelopes]
    assert await redis.xlen(keys.stream) == 201
    assert store.writes - before == 200 // store.chunk  # one per chunk, not one per request
    records = await queue.index.records([e.id for e in envelopes])
    assert all(r is not None and r.state == "queued" for r in records)


async def test_repeats_inside_one_batch_are_recognised(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    key = DeliveryKey("webhook-id", "msg-9", 60)
    first, *rest = [envelope(n) for n in range(10)]
    results = await asyncio.gather(
        queue.intake.enqueue(first, key), *(queue.intake.enqueue(e, key) for e in rest)
    )
    assert results[0] == (first.id, True)
    assert all(r == (first.id, False) for r in results[1:])
    assert await redis.xlen(keys.stream) == 1


async def test_script_cache_lost_is_reloaded(queue: Queue, redis: Redis, keys: Keys) -> None:
    await redis.script_flush()
    results = await asyncio.gather(*(queue.intake.enqueue(envelope(n)) for n in range(30)))
    assert all(stored for _, stored in results)
    assert await redis.xlen(keys.stream) == 30


async def test_an_error_reply_fails_only_its_own_caller(redis: Redis) -> None:
    script = Script(
        NoKeys,
        Word,
        "if A.word == 'bad' then return redis.error_reply('refused') end return A.word",
    )
    await redis.script_load(script.text)
    batcher = ScriptBatcher(redis, script.bind(redis))
    results = await asyncio.gather(
        *(batcher(NoKeys(), Word(arg)) for arg in ("a", "bad", "c")), return_exceptions=True
    )
    assert results[0::2] == ["a", "c"]
    assert isinstance(results[1], ResponseError) and "refused" in str(results[1])
    assert await batcher(NoKeys(), Word("next")) == "next"  # the replies stay in step


@dataclass(frozen=True)
class CountKey:
    count: str


async def test_a_loading_reply_is_sent_again_and_answered(redis: Redis) -> None:
    """Redis answered LOADING (still reading its data after a restart): the script did not
    run, so it is sent again after a pause, and the caller gets the second answer."""
    script = Script(
        CountKey,
        Word,
        "if redis.call('INCR', K.count) == 1 then\n"
        "  return redis.error_reply('LOADING Redis is loading the dataset in memory')\n"
        "end\n"
        "return A.word",
    )
    await redis.delete("batching-test:loading")
    await redis.script_load(script.text)  # so that only LOADING makes it send again
    batcher = ScriptBatcher(redis, script.bind(redis))
    try:
        assert await batcher(CountKey("batching-test:loading"), Word("after")) == "after"
        assert await redis.get("batching-test:loading") == "2"  # refused once, then run
        assert batcher.writes == 2
    finally:
        await redis.delete("batching-test:loading")


async def test_an_error_reply_that_says_the_connection_is_unusable_breaks_it(
    redis: Redis,
) -> None:
    """An error reply redis-py reads as a ConnectionError (here: the server's client limit)
    fails every script written with it, as a lost connection does, and the next call gets a
    new connection."""
    script = Script(
        NoKeys,
        Word,
        "if A.word == 'full' then return redis.error_reply('ERR max number of clients "
        "reached') end return A.word",
    )
    await redis.script_load(script.text)
    batcher = ScriptBatcher(redis, script.bind(redis))
    assert await batcher(NoKeys(), Word("warm")) == "warm"
    first = batcher._connection
    results = await asyncio.gather(
        *(batcher(NoKeys(), Word(w)) for w in ("a", "full", "c")), return_exceptions=True
    )
    assert all(isinstance(r, RedisConnectionError) for r in results)
    assert await batcher(NoKeys(), Word("next")) == "next"  # reconnected, in step
    assert first is not None and batcher._connection is first and first.is_connected


async def test_replies_larger_than_a_socket_read_and_many_in_one_read(redis: Redis) -> None:
    """Replies are parsed from whatever the socket gives: a reply split over several reads,
    and many small ones in one, each reach their own caller."""
    batcher = echo_batcher(redis, chunk=64)
    big = "x" * (3 * READ_SIZE + 17)
    words = [big if n % 10 == 0 else f"w{n}" for n in range(50)]
    assert await asyncio.gather(*(batcher(NoKeys(), Word(w)) for w in words)) == words


@dataclass(slots=True)
class Mixed:
    text: str
    raw: bytes
    number: int
    real: float
    flag: bool
    missing: str | None


def test_a_scripts_command_is_its_packed_keys_and_arguments() -> None:
    script = Script(Word, Mixed, "return 1")
    keys, args = Word("k:1"), Mixed("t", b"\x00b", 7, 0.1, True, None)
    key_list, arg_list = script.pack(keys, args, ["k:2"], [False, 2.5])
    assert key_list == ["k:1", "k:2"]
    assert arg_list == ["t", b"\x00b", 7, "0.1", "1", "", "", "2.5"]
    command = script.command("abc", keys, args, ["k:2"], [False, 2.5])
    assert command == ("EVALSHA", "abc", 2, *key_list, *arg_list)


async def test_redis_gone_fails_every_waiting_request() -> None:
    server = RedisServer()
    server.start()
    client: Redis = Redis.from_url(server.url, decode_responses=True)
    queue = Queue(client, Keys("gone"), record_ttl=60)
    try:
        await queue.intake.enqueue(envelope(0))
        server.stop(remove=False)
        results = await asyncio.gather(
            *(queue.intake.enqueue(envelope(n)) for n in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, (RedisConnectionError, OSError)) for r in results)
    finally:
        await client.aclose()
        server.stop()


@pytest.mark.parametrize("size", [1, 2])
async def test_small_batches_work(queue: Queue, size: int) -> None:
    results = await asyncio.gather(*(queue.intake.enqueue(envelope(n)) for n in range(size)))
    assert all(stored for _, stored in results)


def echo_batcher(redis: Redis, chunk: int) -> ScriptBatcher[NoKeys, Word]:
    return ScriptBatcher(redis, Script(NoKeys, Word, "return A.word").bind(redis), chunk=chunk)


async def test_a_full_chunk_is_written_before_the_loops_turn_ends(redis: Redis) -> None:
    batcher = echo_batcher(redis, chunk=4)
    assert await batcher(NoKeys(), Word("warm")) == "warm"  # connected, script loaded
    before = batcher.writes
    futures = [batcher(NoKeys(), Word(str(n))) for n in range(10)]
    assert batcher.writes - before == 2  # 4 + 4 at once; the last 2 wait for the turn's end
    assert await asyncio.gather(*futures) == [str(n) for n in range(10)]
    assert batcher.writes - before == 3


async def test_replies_stay_in_order_with_many_writes_in_flight(redis: Redis) -> None:
    batcher = echo_batcher(redis, chunk=1)
    assert await batcher(NoKeys(), Word("warm")) == "warm"
    before = batcher.writes
    words = [f"w{n}" for n in range(300)]
    assert await asyncio.gather(*(batcher(NoKeys(), Word(w)) for w in words)) == words
    assert batcher.writes - before == 300


async def test_a_connection_closed_while_idle_is_replaced_before_writing(
    redis: Redis, redis_server: RedisServer
) -> None:
    """Redis closed it (a restart, a timeout): the next write goes on a new connection and
    nobody gets an error."""
    client: Redis = Redis.from_url(redis_server.url, decode_responses=True, client_name="idle")
    batcher = echo_batcher(client, chunk=8)
    try:
        assert await batcher(NoKeys(), Word("first")) == "first"
        # The batcher's connection, and the pool's if it loaded the script: all of them.
        own = [c["id"] for c in await redis.client_list() if c["name"] == "idle"]
        assert own
        for client_id in own:
            assert await redis.client_kill_filter(_id=client_id) == 1
        await asyncio.sleep(0.05)  # the loop sees the close
        words = await asyncio.gather(*(batcher(NoKeys(), Word(w)) for w in "abc"))
        assert words == ["a", "b", "c"]
    finally:
        await client.aclose()


async def test_a_connection_lost_with_replies_pending_fails_those_and_recovers(
    redis: Redis,
) -> None:
    """What was written on a connection that broke may or may not have run: each of those
    callers gets the error (the sender retries; the delivery key tells a repeat), and the next
    script goes on a new connection."""
    batcher = echo_batcher(redis, chunk=3)
    assert await batcher(NoKeys(), Word("warm")) == "warm"  # connected, script loaded
    before = batcher.writes
    pending = [batcher(NoKeys(), Word(w)) for w in "xyz"]  # a full chunk: written at once
    assert batcher.writes - before == 1 and batcher._connection is not None
    writer = batcher._connection._writer
    assert writer is not None
    writer.transport.abort()
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(r, (RedisConnectionError, OSError)) for r in results), results
    assert await batcher(NoKeys(), Word("after")) == "after"


async def test_unreplicated_writes_are_not_acknowledged(redis: Redis) -> None:
    """``WAIT 1`` with no replica: the script ran (stored on the master) but every caller of
    the write is told it was not acknowledged."""
    script = Script(Word, NoKeys, "return redis.call('INCR', K.word)")
    batcher = ScriptBatcher(redis, script.bind(redis), chunk=8)
    batcher.wait_for_replicas(1, 0.05)
    await redis.delete("{t}:acks")
    results = await asyncio.gather(
        *(batcher(Word("{t}:acks"), NoKeys()) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, NotReplicated) for r in results), results
    assert await redis.get("{t}:acks") == "3"
    await redis.delete("{t}:acks")


async def test_a_script_cache_lost_under_writes_in_flight_runs_each_once(redis: Redis) -> None:
    script = Script(Word, NoKeys, "return redis.call('INCR', K.word)")
    batcher = ScriptBatcher(redis, script.bind(redis), chunk=2)
    await redis.delete("{t}:runs")
    assert await batcher(Word("{t}:runs"), NoKeys()) == 1
    await redis.script_flush()
    results = await asyncio.gather(*(batcher(Word("{t}:runs"), NoKeys()) for _ in range(10)))
    assert sorted(results) == list(range(2, 12))  # each ran once, after the reload
    await redis.delete("{t}:runs")
