"""SIGTERM under load: the worker process stops taking work, finishes what it holds within the
grace period, exits well within 30 s, and leaves the rest pending for another worker. Nothing is
lost and nothing reaches Close twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time

import aiohttp
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from service.dev.redis_server import RedisServer, free_port
from service.keys import GROUP, Keys
from service.queue import Queue
from tests.conftest import API_KEY, ROOT, emulator_state, enqueue, lead_posts

PEOPLE = 120


def worker_env(redis_server: RedisServer, prefix: str, emulator: TestServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
    env.update(
        INTAKE_ENV="production",
        INTAKE_LOG_LEVEL="WARNING",
        INTAKE_REDIS_URL=redis_server.url,
        INTAKE_KEY_PREFIX=prefix,
        INTAKE_CLOSE_BASE_URL=str(emulator.make_url("/api/v1")),
        INTAKE_CLOSE_API_KEY=API_KEY,
        INTAKE_SOURCES_FILE=str(ROOT / "tests" / "sources.yaml"),
        INTAKE_WORKER_HTTP_PORT="0",
        INTAKE_WORKER_CONCURRENCY="16",
        INTAKE_SHUTDOWN_GRACE_SECONDS="10",
        INTAKE_VISIBILITY_TIMEOUT_SECONDS="2",
        INTAKE_CLOSE_RATE_LIMIT="100000",
        # The session's Redis keeps nothing across a restart, which production refuses.
        INTAKE_ALLOW_VOLATILE_REDIS="true",
    )
    return env


async def start_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        "worker",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_sigterm_under_load_loses_nothing_and_creates_nothing_twice(
    queue: Queue,
    redis: Redis,
    keys: Keys,
    redis_server: RedisServer,
    prefix: str,
    emulator: TestServer,
) -> None:
    state = emulator_state(emulator)
    state.configure(latency_ms=80)  # every Close call takes a while: work is in flight
    ids = [
        await enqueue(queue, {"contact": {"name": f"Shut Down {n}", "email": f"sd{n}@example.com"}})
        for n in range(PEOPLE)
    ]
    env_vars = worker_env(redis_server, prefix, emulator)
    first = await start_worker(env_vars)
    try:
        for _ in range(300):  # under load: some leads made, most still to do
            if len(state.leads) >= 10:
                break
            await asyncio.sleep(0.02)
        assert 10 <= len(state.leads) < PEOPLE
        stopping = time.monotonic()
        first.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(first.communicate(), 30)
        took = time.monotonic() - stopping
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    assert first.returncode == 0, stderr.decode()[-2000:]
    # In-flight work takes well under a second: the worker must not sit out its 10 s grace.
    assert took < 10, f"the worker took {took:.1f}s to stop"
    finished = [r for r in [await queue.records.get(i) for i in ids] if r and r.terminal]
    assert len(finished) < PEOPLE  # it stopped taking work
    # What the first worker left is finished by another.
    second = await start_worker(env_vars)
    try:
        for _ in range(1500):
            records = [await queue.records.get(i) for i in ids]
            if all(r is not None and r.terminal for r in records):
                break
            await asyncio.sleep(0.02)
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.communicate(), 30)
    assert [r.state for r in records if r] == ["created"] * PEOPLE
    assert len(lead_posts(state)) == PEOPLE  # no create sent twice
    for n in range(PEOPLE):
        assert len(state.leads_with_email(f"sd{n}@example.com")) == 1
    assert await redis.xlen(keys.stream) == 0
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 0


async def test_receiver_sigterm_fails_readiness_then_drains_without_losing_a_request(
    redis: Redis, keys: Keys, redis_server: RedisServer, prefix: str, emulator: TestServer
) -> None:
    port = free_port()
    env = worker_env(redis_server, prefix, emulator)
    env.update(INTAKE_PORT=str(port), INTAKE_HOST="127.0.0.1", INTAKE_DRAIN_SECONDS="1.5")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        "serve",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    accepted: list[str] = []
    refused = 0
    readiness: list[int] = []
    stop_load = asyncio.Event()

    async def load(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal refused
        i = 0
        while not stop_load.is_set():
            i += 1
            body = {"contact": {"email": f"r{n}-{i}@example.com"}}
            try:
                async with session.post(f"{base}/hooks/partner", json=body) as response:
                    if response.status == 202:
                        accepted.append((await response.json())["id"])
            except aiohttp.ClientError:
                refused += 1  # the listener is closed: the sender would retry elsewhere
                await asyncio.sleep(0.05)

    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{base}/healthz") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.05)
            workers = [asyncio.create_task(load(session, n)) for n in range(6)]
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            # The process handles the signal on its next turn of the event loop: a probe
            # already on the wire may still be answered first (seen with uvloop).
            await asyncio.sleep(0.05)
            for _ in range(10):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{base}/readyz") as response:
                        readiness.append(response.status)
                await asyncio.sleep(0.1)
            _, stderr = await asyncio.wait_for(proc.communicate(), 30)
            stop_load.set()
            await asyncio.gather(*workers)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert readiness and set(readiness) == {503}  # readiness fails at once, and stays failed...
    assert len(accepted) > 20  # ...while it still took the requests routed to it
    # Nothing answered 202 is missing: every id has its record and its stream entry.
    records = await Queue(redis, keys, record_ttl=3600).index.records(accepted)
    assert all(r is not None and r.state == "queued" for r in records)
    assert await redis.xlen(keys.stream) == len(accepted)
