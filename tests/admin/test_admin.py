"""The admin surface at the HTTP level: one record over the API, and the dashboard's login,
session cookie, CSRF protection and what each page shows (the browser test drives the pages)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from redis.asyncio import Redis

from service.admin.sessions import COOKIE, session_cookie
from service.config.settings import Settings
from service.config.sources import Sources
from service.queue import Queue, Transition
from service.receiver.app import create_app
from tests.conftest import ADMIN_TOKEN

PROBLEM = "application/problem+json"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
Client = TestClient[Any, Any]


async def test_record_needs_a_valid_token(client: Client) -> None:
    posted = await (
        await client.post("/hooks/partner", json={"contact": {"email": "a@example.com"}})
    ).json()
    url = f"/v1/submissions/{posted['id']}"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
    ):
        response = await client.get(url, headers=headers)
        assert response.status == 401
        assert response.content_type == PROBLEM
    response = await client.get(url, headers=ADMIN)
    assert response.status == 200
    record = await response.json()
    assert record["id"] == posted["id"]
    assert record["state"] == "queued"
    assert record["payload"] == {"contact": {"email": "a@example.com"}}
    assert [event["state"] for event in record["history"]] == ["queued"]


async def test_unknown_submission_is_404(client: Client) -> None:
    for url in ("/v1/submissions/sub_nothing", "/v1/submissions/replay"):
        response = await client.get(url, headers=ADMIN)
        assert response.status == 404, url
        assert response.content_type == PROBLEM


# -- the dashboard ------------------------------------------------------------------------------


async def login(client: Client, token: str = ADMIN_TOKEN, next_path: str = "") -> Any:
    return await client.post(
        "/admin/login", data={"token": token, "next": next_path}, allow_redirects=False
    )


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, page
    return found[1]


async def post_sub(client: Client, email: str) -> str:
    body = {"contact": {"name": "Ann Lee", "email": email}}
    return str((await (await client.post("/hooks/partner", json=body)).json())["id"])


async def test_login_sets_a_session_cookie_that_is_not_the_token(client: Client) -> None:
    first = await client.get("/admin")
    assert first.status == 200 and 'name="token"' in await first.text()
    assert "Set-Cookie" not in first.headers
    csp = first.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "form-action 'self'" in csp and "script" not in csp
    assert first.headers["Cache-Control"] == "no-store"

    wrong = await login(client, "not-the-token")
    assert wrong.status == 401 and "not an admin token" in await wrong.text()
    assert "Set-Cookie" not in wrong.headers

    response = await login(client)
    assert response.status == 303 and response.headers["Location"] == "/admin"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert ADMIN_TOKEN not in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test below
    page = await client.get("/admin")
    assert page.status == 200 and "Dead letters" in await page.text()


async def test_a_body_that_is_not_a_form_logs_nobody_in(client: Client) -> None:
    for content_type, body, status in (
        ("multipart/form-data", b"token=" + ADMIN_TOKEN.encode(), 401),  # no boundary
        ("multipart/form-data; boundary=zz", b"--zz\r\nbroken", 401),
        ("text/plain", b"token=" + ADMIN_TOKEN.encode(), 401),
        # A form that cannot be read is a 400 problem, as at the door.
        ("application/x-www-form-urlencoded", b"token=\xff", 400),
        ("application/x-www-form-urlencoded; charset=utf-16", b"token=abc", 400),  # odd length
        ("application/x-www-form-urlencoded; charset=nope", b"token=x", 415),
    ):
        response = await client.post(
            "/admin/login", data=body, headers={"Content-Type": content_type}
        )
        assert response.status == status, content_type
        assert "Set-Cookie" not in response.headers
        if status != 401:
            assert response.content_type == "application/problem+json"


async def test_session_cookie_is_secure_behind_a_trusted_https_proxy(
    make_settings: Callable[..., Settings], sources: Sources, redis: Redis
) -> None:
    settings = make_settings(trusted_proxies="127.0.0.1/32")
    async with TestClient(TestServer(create_app(settings, sources, redis=redis))) as client:
        response = await client.post(
            "/admin/login",
            data={"token": ADMIN_TOKEN},
            headers={"X-Forwarded-Proto": "https"},
            allow_redirects=False,
        )
        assert "Secure" in response.headers["Set-Cookie"]
    async with TestClient(TestServer(create_app(make_settings(), sources, redis=redis))) as client:
        response = await client.post(
            "/admin/login",
            data={"token": ADMIN_TOKEN},
            headers={"X-Forwarded-Proto": "https"},  # from a peer that is not a trusted proxy
            allow_redirects=False,
        )
        assert "Secure" not in response.headers["Set-Cookie"]


async def test_pages_need_a_session_and_return_where_they_were_asked(client: Client) -> None:
    response = await client.get("/admin/dead", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/admin?next=/admin/dead"
    response = await login(client, next_path="/admin/dead")
    assert response.headers["Location"] == "/admin/dead"
    for elsewhere in ("https://evil.example/", "//evil.example/admin", "/admin/../v1/counts"):
        response = await login(client, next_path=elsewhere)
        assert response.headers["Location"] == "/admin"


async def test_forged_expired_and_withdrawn_sessions_are_refused(
    make_settings: Callable[..., Settings], sources: Sources, redis: Redis
) -> None:
    settings = make_settings(admin_token=SecretStr("old-token,new-token"))
    app = create_app(settings, sources, redis=redis)
    async with TestClient(TestServer(app)) as client:
        for value in (
            session_cookie("another-token"),
            session_cookie("old-token", now=time.time() - 13 * 3600),
            "1700000000." + "0" * 64,
            "garbage",
        ):
            client.session.cookie_jar.update_cookies({COOKIE: value})
            page = await client.get("/admin")
            assert 'name="token"' in await page.text(), value
            dead = await client.get("/admin/dead", allow_redirects=False)
            assert dead.status == 303
        client.session.cookie_jar.update_cookies({COOKIE: session_cookie("old-token")})
        assert 'name="token"' not in await (await client.get("/admin")).text()
    # The old token is withdrawn: sessions opened with it end, the new token's stay.
    settings = make_settings(admin_token=SecretStr("new-token"))
    async with TestClient(TestServer(create_app(settings, sources, redis=redis))) as client:
        client.session.cookie_jar.update_cookies({COOKIE: session_cookie("old-token")})
        assert 'name="token"' in await (await client.get("/admin")).text()
        client.session.cookie_jar.update_cookies({COOKIE: session_cookie("new-token")})
        assert 'name="token"' not in await (await client.get("/admin")).text()


async def test_buttons_need_the_sessions_csrf_token(client: Client, queue: Queue) -> None:
    sub_id = await post_sub(client, "cy@example.com")
    await queue.steps.apply(Transition(sub_id, "dead", dead=True, source="partner"))
    await login(client)
    page = await (await client.get("/admin/dead")).text()
    assert sub_id in page
    csrf = csrf_of(page)
    url = f"/admin/submissions/{sub_id}/replay"
    for form in ({}, {"csrf": "0" * 32}, {"csrf": csrf[:-1]}):
        refused = await client.post(url, data=form, allow_redirects=False)
        assert refused.status == 403, form
    record = await queue.records.get(sub_id)
    assert record is not None and record.state == "dead"  # nothing was done

    done = await client.post(url, data={"csrf": csrf, "next": "/admin/dead"}, allow_redirects=False)
    assert done.status == 303 and done.headers["Location"] == "/admin/dead?replayed=1"
    record = await queue.records.get(sub_id)
    assert record is not None and record.state == "queued"

    client.session.cookie_jar.clear()  # the same form without the session cookie
    refused = await client.post(url, data={"csrf": csrf}, allow_redirects=False)
    assert refused.status == 403


async def test_personal_data_only_on_the_submissions_own_page(client: Client, queue: Queue) -> None:
    sub_id = await post_sub(client, "<script>alert(1)</script>@example.com")
    await login(client)
    overview = await (await client.get("/admin")).text()
    assert sub_id in overview and "example.com" not in overview
    page = await (await client.get(f"/admin/submissions/{sub_id}")).text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;@example.com" in page
    assert "<script>" not in page
    missing = await client.get("/admin/submissions/sub_nothing")
    assert missing.status == 404 and "No such submission" in await missing.text()


async def test_erase_from_the_dashboard_needs_confirming(
    client: Client, queue: Queue, redis: Redis
) -> None:
    sub_id = await post_sub(client, "dee@example.com")
    await queue.steps.apply(Transition(sub_id, "created", lead_id="lead_1"))
    await login(client)
    page = await (await client.get(f"/admin/submissions/{sub_id}")).text()
    url = f"/admin/submissions/{sub_id}/erase"
    response = await client.post(url, data={"csrf": csrf_of(page)}, allow_redirects=False)
    assert response.headers["Location"].endswith("?done=unconfirmed")
    record = await queue.records.get(sub_id)
    assert record is not None and record.state == "created"

    response = await client.post(url, data={"csrf": csrf_of(page), "confirm": "yes"})
    text = await response.text()
    assert "Personal data erased" in text and "dee@example.com" not in text
    record = await queue.records.get(sub_id)
    assert record is not None and record.state == "erased" and record.envelope is None


async def test_replay_all_dead_letters_and_log_out(client: Client, queue: Queue) -> None:
    ids = [await post_sub(client, f"e{n}@example.com") for n in range(3)]
    for sub_id in ids[:2]:
        await queue.steps.apply(Transition(sub_id, "dead", dead=True, source="partner"))
    await login(client)
    page = await (await client.get("/admin/dead")).text()
    assert "Replay all 2" in page and ids[2] not in page
    response = await client.post("/admin/dead/replay", data={"csrf": csrf_of(page)})
    assert "2 queued again." in await response.text()
    states = [(await queue.records.get(i)).state for i in ids]  # type: ignore[union-attr]
    assert states == ["queued", "queued", "queued"]

    response = await client.post(
        "/admin/logout", data={"csrf": csrf_of(page)}, allow_redirects=False
    )
    assert response.status == 303
    assert f"{COOKIE}=" in response.headers["Set-Cookie"]
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert 'name="token"' in await (await client.get("/admin")).text()
