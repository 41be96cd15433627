"""How many Redis round trips a submission costs the worker: pinned, so that a change that adds
one per lead shows up here rather than only in the benchmark."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from service.config.settings import Settings
from service.config.sources import Sources
from service.queue import Queue, buckets, transitions
from service.worker import identity
from tests.conftest import emulator_state, enqueue, running_worker, wait_for_record

N = 12


def command_name(packed: Any, scripts: dict[str, str]) -> str:
    """The command a packed write starts with; EVALSHA by script name."""
    first = bytes(packed if isinstance(packed, (bytes, bytearray)) else packed[0])
    parts = first.split(b"\r\n")
    name = parts[2].decode().upper() if len(parts) > 2 else "?"
    if name == "EVALSHA" and len(parts) > 4:
        return scripts.get(parts[4].decode(), "EVALSHA ?")
    return name


CONNECTING = frozenset({"HELLO", "CLIENT", "AUTH", "SELECT"})
"""Sent once per new connection of the pool, not per submission."""


@pytest.fixture
async def round_trips(monkeypatch: pytest.MonkeyPatch, redis: Redis) -> Counter[str]:
    """Writes to Redis made by the worker's processing tasks (one write = one round trip, a
    pipeline included), by command; the scripts are loaded beforehand (a first EVALSHA that
    meets NOSCRIPT costs a load and a second try, once per Redis, not per submission)."""
    named = {
        "claim": transitions._CLAIM,
        "transition": transitions._TRANSITION,
        "take_locks": identity._TAKE_LOCKS,
        "take_tokens": buckets.TAKE,
        "release_lock": identity._RELEASE_LOCKS,
    }
    scripts = {}
    for name, script in named.items():
        scripts[await redis.script_load(script.text)] = name
    seen: Counter[str] = Counter()
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        import asyncio  # noqa: PLC0415

        task = asyncio.current_task()
        if task is not None and task.get_name().startswith("processor-"):
            name = command_name(command, scripts)
            if name not in CONNECTING:
                seen[name] += 1
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return seen


async def test_a_new_persons_lead_costs_five_round_trips_plus_shared_tokens(
    round_trips: Counter[str],
    queue: Queue,
    make_settings: Any,
    sources: Sources,
    redis: Redis,
    emulator: Any,
) -> None:
    ids = []
    for i in range(N):
        contact = {
            "email": f"trips{i}@example.com",
            "name": f"Trip {i}",
            "phone": f"+1 415 555 {2000 + i}",
        }
        ids.append(await enqueue(queue, {"contact": contact, "notes": "hello"}))
    settings: Settings = make_settings(worker_concurrency=4)
    async with running_worker(settings, sources, redis):
        for sub_id in ids:
            assert (await wait_for_record(queue, sub_id)).state == "created"
    calls = Counter(r.group for r in emulator_state(emulator).requests if r.group != "read")
    assert calls == Counter({"search": N, "lead_write": N, "activity_write": N})
    tokens = round_trips.pop("take_tokens", 0)
    # Read + mark processing; the locks (with the cache and marks); "creating lead" with the
    # marks; "lead created" with the cache; the outcome with the ack and the locks' release.
    assert round_trips == Counter({"claim": N, "take_locks": N, "transition": 3 * N})
    assert tokens <= 3 * N  # never more than one per Close request
