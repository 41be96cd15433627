"""Test session plumbing: one real redis-server for the session, a key prefix per test, the
built-in Close emulator, and helpers to run the receiver and worker in-process."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from redis.asyncio import Redis

from close_emulator import (
    EMULATOR_STATE,
    EmulatorOptions,
    EmulatorState,
    RequestRecord,
    create_emulator_app,
)
from provider_emulator import create_provider_emulator_app
from service.close.client import CloseClient
from service.config.settings import Settings
from service.config.sources import Sources, load_sources, parse_sources
from service.dev.redis_server import RedisServer
from service.envelope import Envelope, new_submission_id
from service.keys import Keys
from service.queue import Queue, Record
from service.receiver.app import create_app
from service.worker.pool import Worker
from service.worker.runtime import open_worker

ROOT = Path(__file__).resolve().parent.parent

# tests/image builds the container image and runs it with podman: `make image-check` runs it
# (INTAKE_IMAGE_CHECK=1); the everyday `make test` leaves it out.
collect_ignore = [] if os.environ.get("INTAKE_IMAGE_CHECK") == "1" else ["image"]
API_KEY = "test-close-key"
ADMIN_TOKEN = "test-admin-token"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("INTAKE_", "EMULATOR_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def keys(prefix: str) -> Keys:
    return Keys(prefix)


@pytest.fixture
async def emulator() -> AsyncIterator[TestServer]:
    app = create_emulator_app(EmulatorOptions(api_keys=[API_KEY], seed=1))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def emulator_state(server: TestServer) -> EmulatorState:
    return server.app[EMULATOR_STATE]


def emulator_client(session: ClientSession, emulator: TestServer) -> CloseClient:
    """A Close client of the test emulator, for a test acting as someone else in Close (a rep
    making a lead by hand); no retries."""
    return CloseClient(
        session,
        base_url=str(emulator.make_url("/api/v1")),
        api_key=SecretStr(API_KEY),
        timeout=5.0,
        connect_timeout=5.0,
        attempts=1,
    )


def lead_posts(state: EmulatorState) -> list[RequestRecord]:
    """The create-lead requests the emulator received, in order."""
    return [r for r in state.requests if r.method == "POST" and r.path == "/api/v1/lead/"]


@pytest.fixture
async def providers() -> AsyncIterator[TestServer]:
    """The provider emulator (Graph API, HubSpot CRM, Calendly) with its bundled fixtures."""
    server = TestServer(create_provider_emulator_app(), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def provider_urls(server: TestServer) -> dict[str, str]:
    """Settings pointing hydration at the provider emulator."""
    return {
        "meta_graph_url": str(server.make_url("/meta/v25.0")),
        "hubspot_api_url": str(server.make_url("/hubspot")),
        "calendly_api_url": str(server.make_url("/calendly")),
    }


@pytest.fixture
def sources() -> Sources:
    return load_sources(ROOT / "tests" / "sources.yaml")


@pytest.fixture
def make_settings(
    redis_server: RedisServer, prefix: str, emulator: TestServer
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "env": "dev",
            "redis_url": redis_server.url,
            "key_prefix": prefix,
            "close_base_url": str(emulator.make_url("/api/v1")),
            "close_api_key": SecretStr(API_KEY),
            "admin_token": SecretStr(ADMIN_TOKEN),
            "visibility_timeout_seconds": 2.0,
            "read_block_ms": 100,
            "retry_base_seconds": 0.05,
            "retry_max_seconds": 0.2,
            "close_timeout_seconds": 5.0,
            "worker_concurrency": 4,
            "unknown_outcome_grace_seconds": 0.3,
            "identity_lock_seconds": 3.0,
            "auth_probe_seconds": 0.2,
            "close_rate_limit": 1000.0,
            # The tests that send many wrong tokens on purpose are not about the throttle
            # (tests/admin/test_sessions.py is).
            "admin_login_attempts": 1000,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def queue(redis: Redis, keys: Keys, settings: Settings) -> Queue:
    q = Queue(redis, keys, record_ttl=settings.record_ttl_seconds)
    await q.stream.ensure_group()
    return q


@pytest.fixture
async def client(
    settings: Settings, sources: Sources, redis: Redis
) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(settings, sources, redis=redis)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


@asynccontextmanager
async def running_worker(
    settings: Settings, sources: Sources, redis: Redis, **kwargs: Any
) -> AsyncIterator[Worker]:
    """A worker running in the background for the duration of the block."""
    kwargs.setdefault("maintenance_interval", 0.05)
    async with open_worker(settings, sources, redis=redis, **kwargs) as worker:
        task = asyncio.create_task(worker.run())
        ready = asyncio.create_task(worker.ready.wait())
        await asyncio.wait([task, ready], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            ready.cancel()
            task.result()  # raises why the worker could not start
        assert worker.ready.is_set(), "worker did not start within 10 s"
        try:
            yield worker
        finally:
            worker.stop()
            await asyncio.wait_for(task, 15)


async def wait_for_record(
    queue: Queue, sub_id: str, states: tuple[str, ...] = ("created",), within: float = 10.0
) -> Record:
    """Poll until the record reaches one of ``states``; fail with the last record otherwise."""
    deadline = time.monotonic() + within
    record = None
    while time.monotonic() < deadline:
        record = await queue.records.get(sub_id)
        if record is not None and record.state in states:
            return record
        await asyncio.sleep(0.02)
    raise AssertionError(f"record of {sub_id} never reached {states}: {record}")


async def wait_until(check: Callable[[], object], within: float = 5.0) -> None:
    """Poll ``check`` until it is true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {within} s: {check}")
        await asyncio.sleep(0.02)


async def enqueue(queue: Queue, body: Any, source: str = "partner") -> str:
    """Queue a JSON submission straight into the stream (no receiver); returns its id."""
    now = time.time()
    envelope = Envelope(
        id=new_submission_id(now),
        source=source,
        received_at=now,
        content_type="application/json",
        body=body,
    )
    await queue.intake.enqueue(envelope)
    return envelope.id


def sources_from(data: dict[str, Any]) -> Sources:
    return parse_sources(data)


def tagged_sources() -> Sources:
    """A webhook source ``tagged`` whose leads set the emulator's "Lead Source" custom field.
    Delete that field in the emulator after the worker read the schema and Close answers 400:
    the way tests make a dead letter."""
    return sources_from(
        {
            "sources": {
                "tagged": {
                    "kind": "webhook",
                    "extract": {"email": "body.email"},
                    "lead": {"custom": {"Lead Source": "'partner'"}},
                }
            }
        }
    )


__all__ = ["running_worker", "sources_from", "wait_for_record", "web"]
