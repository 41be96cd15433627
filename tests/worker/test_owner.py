"""Owner assignment on its own: weighted turns interleaved, one shared counter per pool (a
retry of a submission gets the same owner and takes no second turn), rules in order,
deactivated and absent users skipped, the default owner when nobody is available."""

from __future__ import annotations

import asyncio
from collections import Counter

from redis.asyncio import Redis

from service.close.directory import Directory, Group, User
from service.config.followup import OwnerSpec
from service.dev.redis_server import RedisServer
from service.keys import Keys
from service.mapping import CloseSchema, CustomField
from service.metrics import Metrics
from service.worker.names import Problems
from service.worker.owner import Owners, choose, interleave, resolve_owner

SCHEMA = CloseSchema(lead_fields=(CustomField("cf_owner", "Lead Owner", "user"),))
USERS = (
    User("user_a", "a@x.example", "A", True),
    User("user_b", "b@x.example", "B", True),
    User("user_c", "c@x.example", "C", True),
    User("user_gone", "gone@x.example", "Gone", False),
    User("user_boss", "boss@x.example", "Boss", True),
)
DIRECTORY = Directory(users=USERS, groups=(Group("group_1", "Team", ("user_a", "user_gone")),))


def owner_plan(**spec: object) -> object:
    problems = Problems("web")
    plan = resolve_owner(
        OwnerSpec.model_validate({"field": "Lead Owner", **spec}), SCHEMA, DIRECTORY, problems
    )
    assert not problems.items, problems.items
    assert plan is not None
    return plan


def test_weights_are_interleaved() -> None:
    assert interleave([("a", 2), ("b", 1)]) == ("a", "b", "a")
    order = interleave([("a", 3), ("b", 1), ("c", 1)])
    assert Counter(order) == {"a": 3, "b": 1, "c": 1} and order[0] == "a" and order[1] != "a"


def test_rules_in_order_and_skipping_the_unavailable() -> None:
    plan = owner_plan(
        rules=[
            {"if": "address.country == 'DE'", "user": "gone@x.example"},
            {"if": "extra.plan == 'enterprise'", "pool": "team"},
        ],
        pool="main",
        pools={
            "main": {"users": ["a@x.example", {"user": "b@x.example", "weight": 2}]},
            "team": {"group": "Team"},
        },
        absent=["b@x.example"],
        default="boss@x.example",
    )
    german = choose(plan, {"address": {"country": "DE"}, "extra": {"plan": "enterprise"}})
    assert german.user == "user_boss" and "deactivated" in german.how  # rule 0's user is gone
    enterprise = choose(plan, {"extra": {"plan": "enterprise"}})
    assert enterprise.pool == "team" and enterprise.order == ("user_a",)  # gone left out
    other = choose(plan, {})
    assert other.pool == "main" and other.order == ("user_a",)  # b absent
    assert plan.pools["main"].left_out == {"user_b": "absent"}


async def test_turns_are_shared_and_a_retry_takes_none(
    redis: Redis, redis_server: RedisServer, keys: Keys
) -> None:
    plan = owner_plan(
        pool="main",
        pools={
            "main": {"users": ["a@x.example", "b@x.example", {"user": "c@x.example", "weight": 2}]}
        },
    )
    metrics = Metrics()
    # Two "processes": two Owners on their own clients, the same Redis.
    first = Owners(redis, keys, pointer_ttl=3600, memo_ttl=3600, metrics=metrics)
    other = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        second = Owners(other, keys, pointer_ttl=3600, memo_ttl=3600, metrics=metrics)
        got = await asyncio.gather(
            *((first if n % 2 else second).assign(plan, {}, f"sub_{n}", "web") for n in range(40))
        )
        again = [await second.assign(plan, {}, f"sub_{n}", "web") for n in range(40)]
    finally:
        await other.aclose()
    counts = Counter(a.user for a in got)
    assert counts == {"user_a": 10, "user_b": 10, "user_c": 20}
    assert sorted(a.turn or 0 for a in got) == list(range(1, 41))
    assert [a.user for a in again] == [a.user for a in got]  # the same owner on a retry
    assert all(a.turn is None for a in again)  # and no second turn
    assert int(await redis.get(keys.owner_turns("main")) or 0) == 40
    assert 0 < await redis.ttl(keys.owner_of("sub_3")) <= 3600
    total = sum(
        s.value
        for m in metrics.registry.collect()
        if m.name == "intake_owner_assignments"
        for s in m.samples
        if s.name.endswith("_total")
    )
    assert total == 40
