"""Dashboard sessions: logging out ends the session on every replica, sessions expire, and
wrong admin tokens are throttled per client (dashboard login and API bearer alike)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.admin.sessions import COOKIE, session_cookie
from service.config.settings import Settings
from service.config.sources import Sources
from service.receiver.app import create_app
from tests.conftest import ADMIN_TOKEN

Client = TestClient[Any, Any]


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match, page[:500]
    return match[1]


@pytest.fixture
async def replicas(
    make_settings: Callable[..., Settings], sources: Sources, redis: Redis
) -> AsyncIterator[tuple[Client, Client]]:
    """Two receivers with the same tokens and the same Redis (two pods behind one Service)."""
    settings = make_settings(trusted_proxies="127.0.0.1/32", admin_login_attempts=3)
    async with (
        TestClient(TestServer(create_app(settings, sources, redis=redis))) as one,
        TestClient(TestServer(create_app(settings, sources, redis=redis))) as two,
    ):
        yield one, two


async def log_in(client: Client, **headers: str) -> str:
    response = await client.post(
        "/admin/login", data={"token": ADMIN_TOKEN}, headers=headers, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    cookie = response.cookies[COOKIE]
    assert cookie["max-age"] == str(12 * 3600)
    return cookie.value


async def page_with(client: Client, cookie: str) -> Any:
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({COOKIE: cookie})
    return await client.get("/admin", allow_redirects=False)


async def test_a_logged_out_cookie_is_refused_on_every_replica(
    replicas: tuple[Client, Client],
) -> None:
    one, two = replicas
    cookie = await log_in(one)
    other = await log_in(one)  # a second session of the same token: not ended by the first's
    for client in (one, two):
        page = await page_with(client, cookie)
        assert page.status == 200 and "Log out" in await page.text()
    page = await page_with(one, cookie)
    logout = await one.post(
        "/admin/logout", data={"csrf": csrf_of(await page.text())}, allow_redirects=False
    )
    assert logout.status == 303
    assert logout.cookies[COOKIE].value == ""  # this browser forgets it...
    for client in (one, two):  # ...and a copy of it is refused everywhere
        page = await page_with(client, cookie)
        text = await page.text()
        assert page.status == 200 and 'name="token"' in text and "Log out" not in text
        erase = await client.post("/admin/dead/replay", data={"csrf": "x"}, allow_redirects=False)
        assert erase.status == 403
    page = await page_with(two, other)
    assert "Log out" in await page.text()


async def test_a_session_expires(
    make_settings: Callable[..., Settings], sources: Sources, redis: Redis
) -> None:
    settings = make_settings(admin_session_seconds=60)
    async with TestClient(TestServer(create_app(settings, sources, redis=redis))) as client:
        cookie = await client.post("/admin/login", data={"token": ADMIN_TOKEN})
        assert cookie.status == 200
        fresh = session_cookie(ADMIN_TOKEN, now=time.time() - 50)
        stale = session_cookie(ADMIN_TOKEN, now=time.time() - 61)
        assert "Log out" in await (await page_with(client, fresh)).text()
        assert "Log out" not in await (await page_with(client, stale)).text()


async def test_wrong_tokens_are_throttled_per_client(replicas: tuple[Client, Client]) -> None:
    one, two = replicas
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    for _ in range(3):
        refused = await one.post(
            "/admin/login", data={"token": "guess"}, headers=attacker, allow_redirects=False
        )
        assert refused.status == 401
    # The bucket is shared by the replicas, and once empty even the right token is refused:
    # guessing learns nothing more.
    for client in (one, two):
        limited = await client.post(
            "/admin/login", data={"token": ADMIN_TOKEN}, headers=attacker, allow_redirects=False
        )
        assert limited.status == 429
        assert int(limited.headers["Retry-After"]) >= 1
        assert COOKIE not in limited.cookies
        api = await client.get(
            "/v1/counts", headers={**attacker, "Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert api.status == 429 and api.content_type == "application/problem+json"
    # Another client is not held up.
    await log_in(two, **{"X-Forwarded-For": "198.51.100.4"})


async def test_wrong_bearer_tokens_count_too(replicas: tuple[Client, Client]) -> None:
    one, _ = replicas
    client = {"X-Forwarded-For": "203.0.113.10"}
    for _ in range(5):  # no credentials at all is not a guess
        assert (await one.get("/v1/counts", headers=client)).status == 401
    for _ in range(3):
        wrong = await one.get("/v1/counts", headers={**client, "Authorization": "Bearer nope"})
        assert wrong.status == 401
    right = await one.get(
        "/v1/counts", headers={**client, "Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert right.status == 429
    login = await one.post(
        "/admin/login", data={"token": ADMIN_TOKEN}, headers=client, allow_redirects=False
    )
    assert login.status == 429
