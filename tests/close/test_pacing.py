"""Close request tokens taken several at a time per process, against a real Redis: the limit
shared by several processes is never exceeded, a pause stops everyone, and a busy process pays
far fewer round trips than requests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from service.close.pacing import LEASE, Pacer, endpoint_group
from service.keys import Keys


class CountingTake:
    """The pacer's real bucket script, counting the token refills."""

    def __init__(self, take: Any) -> None:
        self.take = take
        self.refills = 0

    async def __call__(self, *args: Any) -> Any:
        self.refills += 1
        return await self.take(*args)


def pacers(redis: Redis, keys: Keys, n: int, rate: float) -> list[tuple[Pacer, CountingTake]]:
    """``n`` pacers sharing one bucket, as ``n`` worker processes would."""
    out = []
    for _ in range(n):
        pacer = Pacer(redis, keys, rate=rate)
        counting = CountingTake(pacer._take)
        pacer._take = counting  # type: ignore[assignment]
        out.append((pacer, counting))
    return out


async def send_for(pacer: Pacer, group: str, seconds: float, sent: list[float]) -> None:
    """One task sending to ``group`` as fast as the pacer lets it, for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await pacer.before(group)
        sent.append(time.monotonic())


def overshoot(sent: list[float], rate: float) -> float:
    """How far the requests went over Close's own bucket (capacity ``rate``, one second's
    worth, full at the start, refilled at ``rate``): 0 when they never did."""
    tokens, at, worst = rate, sent[0] if sent else 0.0, 0.0
    for moment in sorted(sent):
        tokens = min(rate, tokens + (moment - at) * rate)
        at = moment
        tokens -= 1
        worst = max(worst, -tokens)
    return worst


@pytest.mark.parametrize("rate", [10.0, 50.0, 400.0])
async def test_processes_sharing_the_limit_never_exceed_it(
    redis: Redis, keys: Keys, rate: float
) -> None:
    group = "search"
    shared = pacers(redis, keys, 3, rate)
    sent: list[list[float]] = [[] for _ in shared]
    seconds = 1.5
    await asyncio.gather(
        *(
            send_for(pacer, group, seconds, sent[i])
            for i, (pacer, _) in enumerate(shared)
            for _ in range(16)
        )
    )
    everything = sorted(t for times in sent for t in times)
    # Never more than Close's bucket allows (1 token of slack for millisecond rounding).
    assert overshoot(everything, rate) <= 1.0
    # ... and the limit is used: after the first second's burst, close to ``rate`` per second.
    start = everything[0]
    steady = [t for t in everything if t >= start + 0.5]
    assert len(steady) >= 0.8 * rate * (everything[-1] - (start + 0.5))
    # Every process gets a share.
    for times in sent:
        assert len(times) >= 0.15 * len(everything)


async def test_a_busy_process_takes_tokens_several_at_a_time(redis: Redis, keys: Keys) -> None:
    [(pacer, scripts)] = pacers(redis, keys, 1, 100_000.0)
    sent: list[float] = []
    await asyncio.gather(*(send_for(pacer, "write", 0.5, sent) for _ in range(32)))
    assert len(sent) > 1000
    assert scripts.refills * 8 < len(sent), (scripts.refills, len(sent))


async def test_below_one_token_per_lease_no_token_is_taken_ahead(redis: Redis, keys: Keys) -> None:
    rate = 0.5 / LEASE  # half a token per lease
    [(pacer, scripts)] = pacers(redis, keys, 1, rate)
    for _ in range(5):
        await pacer.before("read")
    assert scripts.refills == 5
    bucket = await redis.hgetall(keys.close("bucket:read"))
    assert float(bucket["tokens"]) == pytest.approx(rate - 5, abs=0.2)


async def test_tokens_taken_ahead_are_dropped_after_the_lease(redis: Redis, keys: Keys) -> None:
    [(pacer, scripts)] = pacers(redis, keys, 1, 100_000.0)
    sent: list[float] = []
    await asyncio.gather(*(send_for(pacer, "write", 0.2, sent) for _ in range(8)))
    refills = scripts.refills
    await asyncio.sleep(LEASE * 1.5)
    await pacer.before("write")
    assert scripts.refills == refills + 1  # whatever was left was too old to use


async def test_a_pause_stops_this_process_at_once_and_others_within_the_lease(
    redis: Redis, keys: Keys
) -> None:
    group = "search"
    (a, _), (b, _) = pacers(redis, keys, 2, 100_000.0)
    sent_b: list[float] = []
    # b is busy: it holds tokens taken ahead when a learns that Close wants a pause.
    await asyncio.gather(*(send_for(b, group, 0.2, sent_b) for _ in range(8)))
    await asyncio.gather(*(send_for(a, group, 0.05, []) for _ in range(8)))
    paused_at = time.monotonic()
    await a.observe(group, 429, {"Retry-After": "0.4"}, b"")
    after_a: list[float] = []
    after_b: list[float] = []

    async def one(pacer: Pacer, into: list[float]) -> None:
        await pacer.before(group)
        into.append(time.monotonic())

    await asyncio.gather(
        *(one(a, after_a) for _ in range(4)), *(one(b, after_b) for _ in range(40))
    )
    assert all(t >= paused_at + 0.35 for t in after_a), [t - paused_at for t in after_a]
    early = [t - paused_at for t in after_b if t < paused_at + 0.35]
    assert all(t <= LEASE for t in early), early


@pytest.mark.parametrize(
    ("method", "path", "group"),
    [
        ("POST", "data/search/", "search"),
        ("POST", "lead/", "write"),
        ("POST", "contact/", "write"),
        ("PUT", "/api/v1/lead/lead_1/", "write"),
        ("POST", "activity/note/", "activity"),
        ("POST", "/api/v1/activity/custom/", "activity"),
        ("GET", "activity/note/", "read"),
        ("GET", "lead/lead_1/", "read"),
        ("POST", "task/", "task"),
        ("PUT", "/api/v1/task/task_1/", "task"),
        ("POST", "opportunity/", "opportunity"),
        ("POST", "sequence_subscription/", "sequence"),
        ("PUT", "contact/cont_1/", "write"),
        ("GET", "task/", "read"),
    ],
)
def test_a_leads_create_and_its_note_are_paced_in_separate_groups(
    method: str, path: str, group: str
) -> None:
    # Close limits lead writes and activity writes apart: one shared bucket would halve the
    # leads per second its limit allows.
    assert endpoint_group(method, path) == group
