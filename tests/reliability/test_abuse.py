"""Abuse at the door and at the admin side: missing, wrong, stale and replayed signatures; the
admin API and the dashboard without a token or with a wrong one; CORS from origins that are not
listed; open-redirect and header-injection attempts. None of them succeeds, none stores
anything, and the logs of it all (captured as production writes them) hold no secret, no
attacker's token and no email or phone in the clear.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.config.settings import Settings
from service.keys import Keys
from service.logs import AccessLogger
from service.queue import Queue
from service.receiver.app import create_app
from tests.conftest import ADMIN_TOKEN, sources_from
from tests.receiver import signers
from tests.reliability.logcapture import CapturedLogs

pytestmark = pytest.mark.usefixtures("captured_logs")

WHSEC = signers.WHSEC
GH_SECRET = "gh-abuse-secret-5150"
ORIGIN = "https://www.example.com"
THANKS = "https://www.example.com/thanks"
ATTACKER_TOKENS = ("attacker-guess-1", ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1])
SOURCES: dict[str, Any] = {
    "partner": {
        "kind": "webhook",
        "preset": "generic-json",
        "auth": {"scheme": "standard-webhooks", "secrets": ["env:ABUSE_WHSEC"]},
    },
    "gh": {
        "kind": "webhook",
        "preset": "generic-json",
        "auth": {"scheme": "github", "secrets": ["env:ABUSE_GH"]},
    },
    "site": {
        "kind": "form",
        "preset": "generic-form",
        "cors": {"origins": [ORIGIN]},
        "redirect": {
            "success_url": THANKS,
            "error_url": "https://www.example.com/oops",
            "allow": ["https://www.example.com/thanks/*"],
        },
    },
}
PERSON = {"email": "abuse.victim@example.com", "name": "Vic Tim", "phone": "+1 415 555 2671"}
BROWSER = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
}


@pytest.fixture
async def door(
    make_settings: Any,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: CapturedLogs,
) -> AsyncIterator[TestClient[Any, Any]]:
    monkeypatch.setenv("ABUSE_WHSEC", WHSEC)
    monkeypatch.setenv("ABUSE_GH", GH_SECRET)
    captured_logs.secrets |= {WHSEC, WHSEC.removeprefix("whsec_"), GH_SECRET, *ATTACKER_TOKENS}
    captured_logs.phones.add(PERSON["phone"])
    settings: Settings = make_settings()
    app = create_app(settings, sources_from({"sources": SOURCES}), redis=redis)
    # The access log as production writes it (the path without its query string).
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log_class=AccessLogger)
    async with TestClient(server) as client:
        yield client


async def stored(redis: Redis, keys: Keys) -> int:
    return int(await redis.xlen(keys.stream)) if await redis.exists(keys.stream) else 0


async def refused(response: Any) -> None:
    """The one answer every refused sender gets, whatever failed."""
    assert response.status == 401, await response.text()
    body = await response.json(content_type=signers.PROBLEM)
    assert body["type"] == "urn:lead-intake:problem:unauthorized"


# -- signatures ---------------------------------------------------------------------------------


async def test_missing_wrong_stale_and_tampered_signatures_are_refused(
    door: TestClient[Any, Any], redis: Redis, keys: Keys
) -> None:
    body = json.dumps({"contact": PERSON}).encode()
    other = "whsec_" + base64.b64encode(b"not the partner's secret 1234567").decode()
    attempts = {
        "missing": {},
        "wrong secret": signers.standard_webhooks(other, body),
        "stale": signers.standard_webhooks(WHSEC, body, ts=int(time.time()) - 600),
        "future": signers.standard_webhooks(WHSEC, body, ts=int(time.time()) + 600),
        "no timestamp": {
            k: v
            for k, v in signers.standard_webhooks(WHSEC, body).items()
            if k != "webhook-timestamp"
        },
        "garbage": {"webhook-id": "m", "webhook-timestamp": "now", "webhook-signature": "v1,!!"},
        "other id": {**signers.standard_webhooks(WHSEC, body), "webhook-id": "msg_other"},
    }
    for name, headers in attempts.items():
        response = await door.post("/hooks/partner", data=body, headers={**signers.JSON, **headers})
        await refused(response)
        assert await stored(redis, keys) == 0, name
    # A valid signature over another body does not carry over to this one.
    valid = signers.standard_webhooks(WHSEC, body)
    tampered = body.replace(b"abuse.victim", b"abuse.hacker")
    await refused(
        await door.post("/hooks/partner", data=tampered, headers={**signers.JSON, **valid})
    )
    hub = signers.github(GH_SECRET, body)
    for headers in ({}, signers.github("guess", body), {**hub, "X-Hub-Signature-256": "sha1=00"}):
        await refused(await door.post("/hooks/gh", data=body, headers={**signers.JSON, **headers}))
    await refused(await door.post("/hooks/gh", data=tampered, headers={**signers.JSON, **hub}))
    assert await stored(redis, keys) == 0


async def test_a_replayed_request_is_one_submission_and_a_late_replay_is_refused(
    door: TestClient[Any, Any], redis: Redis, keys: Keys
) -> None:
    body = json.dumps({"contact": PERSON}).encode()
    captured = {**signers.JSON, **signers.standard_webhooks(WHSEC, body, msg_id="msg_replay")}
    answers = [await door.post("/hooks/partner", data=body, headers=captured) for _ in range(3)]
    first = await answers[0].json()
    assert answers[0].status == 202
    for again in answers[1:]:
        assert again.status == 200
        assert await again.json() == {"id": first["id"], "duplicate": True}
    assert await stored(redis, keys) == 1
    # The same capture, signed ten minutes ago: outside the window, refused.
    old = signers.standard_webhooks(WHSEC, body, msg_id="msg_old", ts=int(time.time()) - 600)
    await refused(await door.post("/hooks/partner", data=body, headers={**signers.JSON, **old}))
    assert await stored(redis, keys) == 1


# -- the admin API and the dashboard -----------------------------------------------------------


def admin_attempts() -> list[dict[str, str]]:
    token = ADMIN_TOKEN
    basic = base64.b64encode(f"admin:{token}".encode()).decode()
    return [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        *({"Authorization": f"Bearer {guess}"} for guess in ATTACKER_TOKENS),
        {"Authorization": "Bearer null"},
        {"Authorization": "Bearer Bearer"},
        {"Authorization": f"Basic {basic}"},
        {"Authorization": f"Token {token}"},
        {"Authorization": f"{token}"},
        {"X-Admin-Token": token},
        {"Cookie": f"intake_admin={token}"},
    ]


async def seeded(door: TestClient[Any, Any]) -> str:
    response = await door.post(
        "/hooks/site", data=urlencode(PERSON), headers={"Content-Type": BROWSER["Content-Type"]}
    )
    assert response.status == 202
    return str((await response.json())["id"])


async def test_the_admin_api_refuses_every_request_without_the_token(
    door: TestClient[Any, Any], redis: Redis, keys: Keys
) -> None:
    sub_id = await seeded(door)
    routes = [
        ("GET", "/v1/submissions"),
        ("GET", "/v1/counts"),
        ("GET", f"/v1/submissions/{sub_id}"),
        ("POST", f"/v1/submissions/{sub_id}/replay"),
        ("POST", "/v1/submissions/replay"),
        ("DELETE", f"/v1/submissions/{sub_id}"),
        ("GET", f"/v1/submissions?token={ADMIN_TOKEN}"),
    ]
    for method, path in routes:
        for headers in admin_attempts():
            response = await door.request(method, path, headers=headers, json={"ids": [sub_id]})
            text = await response.text()
            assert response.status == 401, (method, path, headers, response.status)
            assert PERSON["email"] not in text and sub_id not in text
    record = await Queue(redis, keys, record_ttl=3600).records.get(sub_id)
    assert record is not None and record.state == "queued"  # not erased, not replayed
    assert "abuse.victim" in (record.envelope or "")


async def test_with_no_admin_token_configured_the_admin_api_is_closed(
    make_settings: Any, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABUSE_WHSEC", WHSEC)
    monkeypatch.setenv("ABUSE_GH", GH_SECRET)
    settings: Settings = make_settings(admin_token=None)
    app = create_app(settings, sources_from({"sources": SOURCES}), redis=redis)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for headers in [{}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}]:
            response = await client.get("/v1/submissions", headers=headers)
            assert response.status in (401, 403, 404), response.status
        login = await client.post("/admin/login", data={"token": ""}, allow_redirects=False)
        assert "intake_admin" not in login.cookies


async def test_the_dashboard_shows_and_does_nothing_without_a_valid_session(
    door: TestClient[Any, Any], redis: Redis, keys: Keys
) -> None:
    sub_id = await seeded(door)
    forged = f"{int(time.time())}.{'0' * 64}"
    for cookie in ["", forged, ADMIN_TOKEN, f"{int(time.time())}.{ADMIN_TOKEN}"]:
        door.session.cookie_jar.clear()
        headers = {"Cookie": f"intake_admin={cookie}"} if cookie else {}
        for path in ["/admin", "/admin/dead", f"/admin/submissions/{sub_id}"]:
            response = await door.get(path, headers=headers, allow_redirects=False)
            text = await response.text()
            assert PERSON["email"] not in text and sub_id not in text, (path, cookie)
        for path in [f"/admin/submissions/{sub_id}/erase", f"/admin/submissions/{sub_id}/replay"]:
            response = await door.post(
                path, data={"csrf": "0" * 32, "confirm": "yes"}, headers=headers
            )
            assert response.status == 403, (path, cookie, response.status)
    for guess in ATTACKER_TOKENS:
        door.session.cookie_jar.clear()
        login = await door.post("/admin/login", data={"token": guess}, allow_redirects=False)
        assert "intake_admin" not in login.cookies, guess
        assert not any("intake_admin" in v for v in login.headers.getall("Set-Cookie", []))
    # A real session without the form's CSRF token still cannot act.
    door.session.cookie_jar.clear()
    login = await door.post("/admin/login", data={"token": ADMIN_TOKEN}, allow_redirects=False)
    assert login.status == 303
    cookie = login.cookies["intake_admin"].value
    erase = await door.post(
        f"/admin/submissions/{sub_id}/erase",
        data={"confirm": "yes", "csrf": "f" * 32},
        headers={"Cookie": f"intake_admin={cookie}"},
    )
    assert erase.status == 403
    record = await Queue(redis, keys, record_ttl=3600).records.get(sub_id)
    assert record is not None and record.state == "queued"


# -- CORS, redirects, header injection ---------------------------------------------------------

EVIL_ORIGINS = [
    "https://evil.example",
    "null",
    "https://www.example.com.evil.example",
    "https://evil.example/https://www.example.com",
    "http://www.example.com",  # the listed origin is https
    "https://www.example.com:8443",
    "https://sub.www.example.com",
]


async def test_cors_gives_nothing_to_origins_that_are_not_listed(
    door: TestClient[Any, Any],
) -> None:
    for origin in EVIL_ORIGINS:
        preflight = await door.options(
            "/hooks/site",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status == 403, origin
        post = await door.post("/hooks/site", json=PERSON, headers={"Origin": origin})
        for response in (preflight, post):
            allowed = [h for h in response.headers if h.lower().startswith("access-control-")]
            assert allowed == [], (origin, allowed)
    listed = await door.post("/hooks/site", json=PERSON, headers={"Origin": ORIGIN})
    assert listed.headers["Access-Control-Allow-Origin"] == ORIGIN  # the list does work


REDIRECT_TRICKS = [
    "https://evil.example/thanks",
    "//evil.example/thanks",
    "/\\evil.example",
    "\\\\evil.example",
    "https://www.example.com.evil.example/thanks/x",
    "https://www.example.com@evil.example/thanks/x",
    "https://evil.example#https://www.example.com/thanks/x",
    "javascript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "https://www.example.com/thanks/../../admin",
    "https://www.example.com/thanks/%2e%2e/%2e%2e/admin",
    "https://www.example.com/thanks/x\r\nSet-Cookie: pwned=1",
    "https://www.example.com/thanks/x%0d%0aSet-Cookie:%20pwned=1",
    "https://www.example.com/thanks/x\nLocation: https://evil.example",
    " https://evil.example",
    "https:evil.example",
    "http://www.example.com/thanks/x",
]


def injected(response: Any) -> list[str]:
    """Headers that carry a line break or that the attacker named."""
    bad = []
    for name, value in response.headers.items():
        if "\r" in value or "\n" in value or (name.lower() == "set-cookie" and "pwned" in value):
            bad.append(f"{name}: {value!r}")
    return bad


async def test_redirect_tricks_land_on_the_configured_page_and_inject_no_header(
    door: TestClient[Any, Any],
) -> None:
    for trick in REDIRECT_TRICKS:
        form = urlencode({**PERSON, "_redirect": trick, "message": trick})
        response = await door.post("/hooks/site", data=form, headers=BROWSER, allow_redirects=False)
        assert response.status == 303, (trick, response.status)
        location = urlsplit(response.headers["Location"])
        assert (location.scheme, location.netloc) == ("https", "www.example.com"), trick
        assert location.path == "/thanks" or location.path.startswith("/thanks/"), trick
        assert ".." not in location.path and "%2e" not in location.path.lower(), trick
        assert injected(response) == [], trick
    # A refused browser post goes to the error page, with nothing of the attacker's in it.
    refused_post = await door.post(
        "/hooks/site?x=%0d%0aSet-Cookie:%20pwned=1",
        data="fax=&message=%0d%0aSet-Cookie:%20pwned=1",
        headers=BROWSER,
        allow_redirects=False,
    )
    assert refused_post.status == 303
    assert refused_post.headers["Location"].startswith("https://www.example.com/oops?")
    assert "pwned" not in refused_post.headers["Location"]
    assert injected(refused_post) == []


async def test_header_injection_through_paths_and_headers_is_refused(
    door: TestClient[Any, Any],
) -> None:
    for path in ["/hooks/site%0d%0aSet-Cookie:%20pwned=1", "/hooks/%0aX-Injected:%201"]:
        response = await door.post(path, json=PERSON, allow_redirects=False)
        assert response.status == 404
        assert injected(response) == [] and "X-Injected" not in response.headers
    # Raw header lines with bare CR / LF inside values never reach a handler as one header.
    requests = [
        b"POST /hooks/site HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Origin: https://www.example.com\rSet-Cookie: pwned=1\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /hooks/site HTTP/1.1\r\nHost: t\r\nIdempotency-Key: a\nSet-Cookie: pwned=1\r\n"
        b"Content-Length: 2\r\n\r\n{}",
    ]
    for raw in requests:
        reader, writer = await asyncio.open_connection(door.host, door.port)
        try:
            writer.write(raw)
            await writer.drain()
            head = await asyncio.wait_for(reader.read(65536), 5)
        finally:
            writer.close()
        status, _, rest = head.partition(b"\r\n")
        headers = rest.split(b"\r\n\r\n", 1)[0]
        assert head == b"" or status.split(b" ")[1].startswith(b"4"), head[:100]
        assert b"pwned" not in headers and b"Set-Cookie" not in headers
