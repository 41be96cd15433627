"""The Close client's retry rules, against the emulator's faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from redis.asyncio import Redis

from service.close.client import CloseClient
from service.close.pacing import Pacer
from service.config.settings import Settings
from service.dev.redis_server import free_port
from service.errors import CloseAuthFailed, CloseRateLimited, CloseRefused, CloseUnavailable
from service.keys import Keys
from tests.conftest import API_KEY, emulator_state, lead_posts


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def client_for(
    session: aiohttp.ClientSession, base: str, key: str = API_KEY, **kw: Any
) -> CloseClient:
    defaults = Settings()
    kw.setdefault("timeout", defaults.close_timeout_seconds)
    kw.setdefault("connect_timeout", defaults.close_connect_timeout_seconds)
    kw.setdefault("attempts", defaults.close_inrequest_attempts)
    return CloseClient(session, base_url=base, api_key=SecretStr(key), **kw)


def lead_post_statuses(server: TestServer) -> list[int]:
    return [r.status for r in lead_posts(emulator_state(server))]


async def test_create_lead_sends_basic_auth_and_returns_the_lead(
    session: aiohttp.ClientSession, emulator: TestServer
) -> None:
    close = client_for(session, str(emulator.make_url("/api/v1")))
    lead = await close.create_lead({"name": "Acme", "contacts": [{"name": "Ann"}]})
    assert lead["id"].startswith("lead_")
    assert lead["contacts"][0]["id"].startswith("cont_")


async def test_post_429_is_retried_after_the_reset_it_names(
    session: aiohttp.ClientSession, emulator: TestServer
) -> None:
    emulator_state(emulator).add_fault(
        method="POST",
        path="/api/v1/lead/",
        status=429,
        count=1,
        headers={"RateLimit": "limit=10, remaining=0, reset=1"},
        body={"error": {"message": "API call count exceeded", "rate_reset": 1}},
    )
    close = client_for(session, str(emulator.make_url("/api/v1")))
    started = time.monotonic()
    await close.create_lead({"name": "Acme"})
    assert time.monotonic() - started >= 1.0
    assert lead_post_statuses(emulator) == [429, 200]
    assert len(emulator_state(emulator).leads) == 1


async def test_post_5xx_is_not_resent(session: aiohttp.ClientSession, emulator: TestServer) -> None:
    emulator_state(emulator).add_fault(method="POST", path="/api/v1/lead/", status=503, count=1)
    close = client_for(session, str(emulator.make_url("/api/v1")))
    with pytest.raises(CloseUnavailable) as info:
        await close.create_lead({"name": "Acme"})
    assert info.value.response is not None and info.value.response.status == 503
    assert lead_post_statuses(emulator) == [503]


async def test_post_timeout_is_not_resent(
    session: aiohttp.ClientSession, emulator: TestServer
) -> None:
    emulator_state(emulator).add_fault(
        method="POST", path="/api/v1/lead/", hang=True, hang_seconds=2, after_apply=True
    )
    close = client_for(session, str(emulator.make_url("/api/v1")), timeout=0.3)
    with pytest.raises(CloseUnavailable, match="outcome unknown"):
        await close.create_lead({"name": "Acme"})
    assert len([r for r in emulator_state(emulator).requests if r.path == "/api/v1/lead/"]) == 1


async def test_get_5xx_is_retried(session: aiohttp.ClientSession, emulator: TestServer) -> None:
    emulator_state(emulator).add_fault(
        method="GET", path="/api/v1/status/lead/", status=502, count=2
    )
    close = client_for(session, str(emulator.make_url("/api/v1")))
    statuses = await close.lead_statuses()
    assert statuses["data"]
    gets = [r.status for r in emulator_state(emulator).requests if r.path == "/api/v1/status/lead/"]
    assert gets == [502, 502, 200]


async def test_connection_refused_is_retried_then_unavailable(
    session: aiohttp.ClientSession,
) -> None:
    close = client_for(session, f"http://127.0.0.1:{free_port()}/api/v1")
    with pytest.raises(CloseUnavailable, match="cannot connect"):
        await close.create_lead({"name": "Acme"})


async def test_400_is_refused_with_the_field_errors(
    session: aiohttp.ClientSession, emulator: TestServer
) -> None:
    close = client_for(session, str(emulator.make_url("/api/v1")))
    with pytest.raises(CloseRefused) as info:
        await close.create_lead({"name": "Acme", "status": "No such status"})
    assert info.value.response is not None
    assert info.value.response.status == 400
    assert "status" in info.value.response.body["field-errors"]


async def test_wrong_key_is_auth_failed(
    session: aiohttp.ClientSession, emulator: TestServer
) -> None:
    close = client_for(session, str(emulator.make_url("/api/v1")), key="revoked")
    with pytest.raises(CloseAuthFailed):
        await close.create_lead({"name": "Acme"})
    assert emulator_state(emulator).leads == {}


async def test_post_429_goes_back_through_the_shared_limiter(
    session: aiohttp.ClientSession, emulator: TestServer, redis: Redis, keys: Keys
) -> None:
    emulator_state(emulator).add_fault(
        method="POST",
        path="/api/v1/lead/",
        status=429,
        count=1,
        headers={"RateLimit": "limit=10, remaining=0, reset=1"},
    )
    pacer = Pacer(redis, keys, rate=1000)
    other = Pacer(redis, keys, rate=1000)  # another process
    close = client_for(session, str(emulator.make_url("/api/v1")), pacer=pacer)
    started = time.monotonic()
    created = asyncio.create_task(close.create_lead({"name": "Acme"}))
    for _ in range(300):
        if await redis.exists(pacer.pause_key("write")):
            break
        await asyncio.sleep(0.01)
    await other.before("write")  # every process waits out the pause Close asked for
    assert time.monotonic() - started >= 0.9
    await created
    assert time.monotonic() - started >= 1.0
    assert lead_post_statuses(emulator) == [429, 200]


async def test_get_timeout_is_retried(session: aiohttp.ClientSession, emulator: TestServer) -> None:
    emulator_state(emulator).add_fault(
        method="GET", path="/api/v1/status/lead/", hang=True, hang_seconds=2, count=1
    )
    close = client_for(session, str(emulator.make_url("/api/v1")), timeout=0.3)
    assert (await close.lead_statuses())["data"]
    gets = [r for r in emulator_state(emulator).requests if r.path == "/api/v1/status/lead/"]
    assert len(gets) == 2


async def test_a_refused_connection_is_known_not_to_have_applied(
    session: aiohttp.ClientSession,
) -> None:
    close = client_for(session, f"http://127.0.0.1:{free_port()}/api/v1", attempts=2)
    with pytest.raises(CloseUnavailable) as info:
        await close.create_lead({"name": "Acme"})
    assert info.value.maybe_applied is False


async def test_the_last_429_is_rate_limited_with_the_wait_close_named(
    session: aiohttp.ClientSession, emulator: TestServer
) -> None:
    emulator_state(emulator).add_fault(
        method="POST",
        path="/api/v1/activity/note/",
        status=429,
        count=2,
        headers={"Retry-After": "0.1"},
    )
    close = client_for(session, str(emulator.make_url("/api/v1")), attempts=2)
    with pytest.raises(CloseRateLimited) as info:
        await close.create_note("lead_x", "hello")
    assert info.value.retry_after == pytest.approx(0.1)
