"""Website forms at the door: CORS, browser redirects, the honeypot, rate limits, file parts,
and refusing at once a form post that can never become a lead."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from redis.asyncio import Redis

from service.config.settings import Settings
from service.keys import Keys
from service.queue import Queue
from tests.receiver.signers import FORM, problem_of, receiver

ORIGIN = "https://www.example.com"
BROWSER = {
    **FORM,
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Origin": ORIGIN,
}
SITE: dict[str, Any] = {
    "site": {
        "kind": "form",
        "preset": "generic-form",
        "cors": {"origins": [ORIGIN, "http://localhost:3000"], "max_age_seconds": 900},
        "redirect": {
            "success_url": "https://www.example.com/thanks",
            "error_url": "https://www.example.com/oops?lang=en",
            "allow": ["https://www.example.com/thanks/*", "https://shop.example.com/done"],
        },
        "honeypot": "fax",
    },
    "hook": {"kind": "webhook", "preset": "generic-json"},
}
LEAD = "name=Ann+Lee&email=ann%40example.com"


async def test_preflight_from_a_listed_origin_allows_the_post(
    settings: Settings, redis: Redis
) -> None:
    async with receiver(settings, redis, SITE) as client:
        response = await client.options(
            "/hooks/site",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert response.status == 204
        headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert headers["Access-Control-Allow-Methods"] == "POST"
    assert "content-type" in headers["Access-Control-Allow-Headers"].lower()
    assert headers["Access-Control-Max-Age"] == "900"
    assert headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Credentials" not in headers


@pytest.mark.parametrize(
    ("path", "origin", "method", "status"),
    [
        ("/hooks/site", "https://evil.example", "POST", 403),
        ("/hooks/site", "https://www.example.com.evil.example", "POST", 403),
        ("/hooks/site", "null", "POST", 403),
        ("/hooks/site", ORIGIN, "DELETE", 403),
        ("/hooks/hook", ORIGIN, "POST", 403),  # a source without CORS settings
        ("/hooks/nope", ORIGIN, "POST", 404),
    ],
)
async def test_preflight_is_refused_without_cors_headers(
    settings: Settings, redis: Redis, path: str, origin: str, method: str, status: int
) -> None:
    async with receiver(settings, redis, SITE) as client:
        response = await client.options(
            path, headers={"Origin": origin, "Access-Control-Request-Method": method}
        )
        slug = "unknown-source" if status == 404 else "origin-not-allowed"
        await problem_of(response, status, slug)
        assert not any(h.startswith("Access-Control-") for h in response.headers)


async def test_answers_carry_cors_headers_only_for_listed_origins(
    settings: Settings, redis: Redis
) -> None:
    async with receiver(settings, redis, SITE) as client:
        listed = await client.post(
            "/hooks/site", json={"email": "ann@example.com"}, headers={"Origin": ORIGIN}
        )
        assert listed.status == 202 and (await listed.json())["status"] == "queued"
        assert listed.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Retry-After" in listed.headers["Access-Control-Expose-Headers"]
        other = await client.post(
            "/hooks/site", json={"email": "bo@example.com"}, headers={"Origin": "https://x.test"}
        )
        assert "Access-Control-Allow-Origin" not in other.headers
        # An error is readable by the listed page too (it can show the reason).
        failed = await client.post(
            "/hooks/site", json={"message": "hi"}, headers={"Origin": ORIGIN}
        )
        await problem_of(failed, 422, "unprocessable")
        assert failed.headers["Access-Control-Allow-Origin"] == ORIGIN
        for response in (listed, other, failed):
            assert response.headers["Vary"] == "Origin"


async def test_wildcard_origin_without_credentials(settings: Settings, redis: Redis) -> None:
    sources = {"open": {"kind": "form", "preset": "generic-form", "cors": {"origins": ["*"]}}}
    async with receiver(settings, redis, sources) as client:
        response = await client.post(
            "/hooks/open", json={"email": "a@example.com"}, headers={"Origin": "https://any.test"}
        )
        assert response.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_browser_posting_the_form_is_sent_to_the_thank_you_page(
    settings: Settings, redis: Redis, queue: Queue
) -> None:
    async with receiver(settings, redis, SITE) as client:
        response = await client.post(
            "/hooks/site", data=LEAD, headers=BROWSER, allow_redirects=False
        )
        assert response.status == 303
        assert response.headers["Location"] == "https://www.example.com/thanks"
        # A program posting the same form still gets JSON.
        program = await client.post("/hooks/site", data="email=cy%40example.com", headers=FORM)
        assert program.status == 202
        record = await queue.records.get((await program.json())["id"])
    assert record is not None and record.state == "queued"


@pytest.mark.parametrize(
    ("requested", "location"),
    [
        ("https://www.example.com/thanks/pricing?plan=pro", None),
        ("https://shop.example.com/done", None),
        ("https://shop.example.com/done/../admin", "https://www.example.com/thanks"),
        ("https://shop.example.com/done2", "https://www.example.com/thanks"),
        ("https://www.example.com/thanks", "https://www.example.com/thanks"),  # not under /thanks/
        ("https://www.example.com/thanks/x\r\nSet-Cookie: a=b", "https://www.example.com/thanks"),
        ("https://www.example.com.evil.test/thanks/", "https://www.example.com/thanks"),
        ("https://evil.test/", "https://www.example.com/thanks"),
        ("//evil.test/thanks/", "https://www.example.com/thanks"),
        ("javascript:alert(1)", "https://www.example.com/thanks"),
        ("http://www.example.com/thanks/a", "https://www.example.com/thanks"),
        ("https://user:pw@www.example.com/thanks/a", "https://www.example.com/thanks"),
    ],
)
async def test_redirect_field_is_honoured_only_on_the_allow_list(
    settings: Settings, redis: Redis, requested: str, location: str | None
) -> None:
    body = urlencode({"email": "ann@example.com", "_redirect": requested})
    async with receiver(settings, redis, SITE) as client:
        response = await client.post(
            "/hooks/site", data=body, headers=BROWSER, allow_redirects=False
        )
        assert response.status == 303
        assert response.headers["Location"] == (location or requested)
        assert "Set-Cookie" not in response.headers


async def test_a_browser_failure_goes_to_the_error_page(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    async with receiver(settings, redis, SITE) as client:
        response = await client.post(
            "/hooks/site", data="message=hello", headers=BROWSER, allow_redirects=False
        )
        assert response.status == 303
        assert (
            response.headers["Location"]
            == "https://www.example.com/oops?lang=en&error=unprocessable"
        )
        program = await client.post("/hooks/site", data="message=hello", headers=FORM)
        body = await problem_of(program, 422, "unprocessable")
    assert "missing required field" in body["detail"]
    assert await redis.xlen(keys.stream) == 0


async def test_webhooks_that_can_never_map_are_refused_unless_their_provider_needs_2xx(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch, queue: Queue
) -> None:
    monkeypatch.setenv("GADS_KEY", "g-key")
    sources = {
        **SITE,
        "gads": {"kind": "webhook", "preset": "google-ads", "auth": {"secrets": ["env:GADS_KEY"]}},
    }
    async with receiver(settings, redis, sources) as client:
        response = await client.post("/hooks/hook", json={"message": "no contact at all"})
        problem = await problem_of(response, 422, "unprocessable")
        assert problem["code"] == "missing-required"
        assert problem["detail"].startswith("missing required field: one of email, phone, name")
        # Google Ads counts only a 200 as delivered: stored, and rejected by the worker.
        doomed = {"lead_id": "L9", "google_key": "g-key", "user_column_data": []}
        kept = await client.post("/hooks/gads", json=doomed)
        assert kept.status == 202
        kept_id = (await kept.json())["id"]
    assert await queue.records.get(kept_id) is not None


async def test_a_filled_honeypot_looks_like_success_and_is_kept_as_spam(
    settings: Settings, redis: Redis, keys: Keys, queue: Queue
) -> None:
    spam = LEAD + "&fax=555-0100&message=cheap+pills"
    async with receiver(settings, redis, SITE) as client:
        bot = await client.post("/hooks/site", data=spam, headers=FORM)
        person = await client.post("/hooks/site", data=LEAD + "&fax=", headers=FORM)
        browser_bot = await client.post(
            "/hooks/site", data=spam + "&n=2", headers=BROWSER, allow_redirects=False
        )
        assert (bot.status, person.status) == (202, 202)
        bot_answer, person_answer = await bot.json(), await person.json()
        assert bot_answer.keys() == person_answer.keys() and bot_answer["status"] == "queued"
        assert browser_bot.status == 303
        assert browser_bot.headers["Location"] == "https://www.example.com/thanks"
    record = await queue.records.get(bot_answer["id"])
    assert record is not None and record.state == "rejected"
    assert record.history[-1]["detail"] == {"reason": "spam"}
    stream = [fields["sub"] for _, fields in await redis.xrange(keys.stream)]
    assert stream == [person_answer["id"]]  # the spam never reaches a worker
    kept = await queue.records.get(person_answer["id"])
    assert kept is not None and "fax" not in json.loads(kept.envelope or "")["body"]


async def test_rate_limits_per_client_and_per_source(
    make_settings: Any, redis: Redis, keys: Keys
) -> None:
    settings = make_settings(trusted_proxies="127.0.0.1/32")
    sources = {
        "site": {
            "kind": "form",
            "preset": "generic-form",
            "rate_limit": {"per_client": "2/minute", "per_source": "3/hour"},
            "dedup": {"body_window_seconds": 0},
        }
    }

    async def post(client: Any, ip: str) -> Any:
        return await client.post(
            "/hooks/site", data=LEAD, headers={**FORM, "X-Forwarded-For": f"{ip}, 10.9.9.9"}
        )

    async with receiver(settings, redis, sources) as client:
        # 10.9.9.9 was added by a proxy that is not trusted: the client is 10.9.9.9.
        assert [(await post(client, "198.51.100.7")).status for _ in range(2)] == [202, 202]
        limited = await post(client, "198.51.100.8")
        body = await problem_of(limited, 429, "rate-limited")
        assert "your address" in body["detail"]
        assert int(limited.headers["Retry-After"]) >= 1
    settings = make_settings(trusted_proxies="127.0.0.1/32,10.0.0.0/8")
    async with receiver(settings, redis, sources) as client:
        # Now both hops are trusted proxies: clients are 198.51.100.x, one post left per source.
        assert (await post(client, "198.51.100.9")).status == 202
        whole = await post(client, "198.51.100.10")
        body = await problem_of(whole, 429, "rate-limited")
        assert "this endpoint" in body["detail"] and int(whole.headers["Retry-After"]) > 60
    assert await redis.xlen(keys.stream) == 3


MULTIPART_WITH_FILE = (
    b"--B\r\n"
    b'Content-Disposition: form-data; name="email"\r\n\r\n'
    b"ann@example.com\r\n"
    b"--B\r\n"
    b'Content-Disposition: form-data; name="cv"; filename="cv.pdf"\r\n'
    b"Content-Type: application/pdf\r\n\r\n"
    b"%PDF-1.4 ...\r\n"
    b"--B--\r\n"
)


@pytest.mark.parametrize("policy", ["drop", "refuse"])
async def test_file_parts_are_dropped_or_refused(
    settings: Settings, redis: Redis, queue: Queue, policy: str
) -> None:
    sources = {"site": {"kind": "form", "preset": "generic-form", "files": policy}}
    headers = {"Content-Type": "multipart/form-data; boundary=B"}
    async with receiver(settings, redis, sources) as client:
        response = await client.post("/hooks/site", data=MULTIPART_WITH_FILE, headers=headers)
        if policy == "refuse":
            body = await problem_of(response, 415, "unsupported-media-type")
            assert "file uploads" in body["detail"] and "'cv'" in body["detail"]
            return
        assert response.status == 202
        record = await queue.records.get((await response.json())["id"])
    stored = json.loads(record.envelope or "") if record else {}
    assert stored["body"] == {"email": "ann@example.com", "_files_dropped": ["cv"]}
    assert b"%PDF" not in (record.envelope or "").encode() if record else False
