"""A person's locks and what is read with them, against a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.keys import Keys
from service.queue import PersonUpdate, Queue, Transition
from service.worker.identity import IdentityBusy, IdentityLocks


def locks_for(redis: Redis, keys: Keys, *, ttl: float = 3.0, wait: float = 1.0) -> IdentityLocks:
    return IdentityLocks(redis, keys, ttl=ttl, wait=wait)


async def test_all_of_a_persons_locks_are_taken_and_released_together(
    redis: Redis, keys: Keys
) -> None:
    locks = locks_for(redis, keys)
    people = ["p:phone", "e:email"]
    async with locks.hold(people) as held:
        assert held.identities == ("e:email", "p:phone")
        values = await redis.mget([keys.lock(i) for i in people])
        assert values == [held.token, held.token]
        for identity in people:
            assert 0 < await redis.pttl(keys.lock(identity)) <= 3000
    assert await redis.exists(*(keys.lock(i) for i in people)) == 0


async def test_none_is_taken_while_another_holder_has_one(redis: Redis, keys: Keys) -> None:
    locks = locks_for(redis, keys, wait=0.2)
    await redis.set(keys.lock("p:shared"), "someone-else", px=10_000)
    with pytest.raises(IdentityBusy):
        async with locks.hold(["e:free", "p:shared"]):
            raise AssertionError("must not get here")
    # All or none: the free lock was not taken (nor left behind) while waiting.
    assert await redis.exists(keys.lock("e:free")) == 0
    assert await redis.get(keys.lock("p:shared")) == "someone-else"


async def test_people_sharing_an_identity_take_turns(redis: Redis, keys: Keys) -> None:
    locks = locks_for(redis, keys, wait=5.0)
    holding: set[str] = set()
    overlaps: list[str] = []
    done: list[str] = []

    async def submission(name: str, identities: list[str]) -> None:
        async with locks.hold(identities):
            overlaps.extend(holding & set(identities))
            holding.update(identities)
            await asyncio.sleep(0.05)
            holding.difference_update(identities)
            done.append(name)

    await asyncio.gather(
        submission("a", ["e:1", "p:1"]),
        submission("b", ["p:1"]),
        submission("c", ["e:1", "p:2"]),
        submission("d", ["p:2", "e:1"]),
    )
    assert overlaps == [] and sorted(done) == ["a", "b", "c", "d"]


async def test_the_cache_and_the_create_marks_are_read_with_the_locks(
    redis: Redis, keys: Keys
) -> None:
    locks = locks_for(redis, keys)
    await redis.set(keys.lead("p:2"), "lead_7")
    await redis.set(keys.creating("p:2"), "sub_other", px=4000)
    async with locks.hold(["e:1", "p:2"]) as held:
        assert held.cached_lead == "lead_7"
        assert held.creating is not None and held.creating[0] == "sub_other"
        assert 3.0 < held.creating[1] <= 4.0
        creating = held.creating_now()
        assert creating is not None and creating[1] <= held.creating[1]
    async with locks.hold(["e:3"]) as held:
        assert (held.cached_lead, held.creating, held.creating_now()) == (None, None, None)


async def test_locks_released_by_the_outcome_are_not_released_again(
    redis: Redis, keys: Keys, queue: Queue
) -> None:
    locks = locks_for(redis, keys)
    async with locks.hold(["e:1"]) as held:
        await queue.steps.apply(
            Transition(
                "sub_missing", "created", person=PersonUpdate(["e:1"], release_token=held.token)
            )
        )
        held.released = True
        assert await redis.exists(keys.lock("e:1")) == 0
        await redis.set(keys.lock("e:1"), "next-holder", px=10_000)  # the next one takes it
    assert await redis.get(keys.lock("e:1")) == "next-holder"


async def test_held_locks_are_refreshed_until_released(redis: Redis, keys: Keys) -> None:
    locks = locks_for(redis, keys, ttl=0.3)
    async with locks.hold(["e:slow", "p:slow"]) as held:
        await asyncio.sleep(0.7)  # more than twice the lock's ttl
        assert await redis.mget([keys.lock("e:slow"), keys.lock("p:slow")]) == [
            held.token,
            held.token,
        ]
    await asyncio.sleep(0.15)  # a refresh that was due does not bring them back
    assert await redis.exists(keys.lock("e:slow"), keys.lock("p:slow")) == 0


async def test_a_failed_refresh_does_not_end_the_refreshing(
    redis: Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    # Redis gone for one round (restarting, say): the next round extends the locks again, so
    # they do not expire under a holder still at work.
    locks = locks_for(redis, keys, ttl=0.3)
    extend = locks._extend
    failures: list[int] = []

    async def flaky(*args: Any) -> Any:
        if not failures:
            failures.append(1)
            raise RedisConnectionError("Connection refused")
        return await extend(*args)

    locks._extend = flaky  # type: ignore[assignment]
    async with locks.hold(["e:busy"]) as held:
        await asyncio.sleep(0.9)  # three ttls: the failed round, then two that must succeed
        assert failures == [1]
        assert await redis.get(keys.lock("e:busy")) == held.token
    assert "refreshing a person's lock failed" in caplog.text
    assert await redis.exists(keys.lock("e:busy")) == 0


async def test_a_refresh_never_extends_someone_elses_lock(redis: Redis, keys: Keys) -> None:
    locks = IdentityLocks(redis, keys, ttl=60, wait=0)
    await redis.set(keys.lock("e:a"), "mine", px=1000)
    await redis.set(keys.lock("e:b"), "theirs", px=1000)
    names = [keys.lock("e:a"), keys.lock("e:b")]
    assert await locks.extend(names, "mine") == 1
    assert await redis.pttl(keys.lock("e:a")) > 1000
    assert await redis.pttl(keys.lock("e:b")) <= 1000
    assert await locks.release(names, "mine") == 1
    assert await redis.get(keys.lock("e:b")) == "theirs"


async def test_no_identity_means_no_lock(redis: Redis, keys: Keys) -> None:
    async with locks_for(redis, keys).hold([]) as held:
        assert held.identities == () and held.cached_lead is None
