"""CAPTCHA checks against a local stand-in for the providers' siteverify endpoints."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from service.config.sources import parse_sources
from service.errors import ConfigError
from service.keys import Keys
from service.queue import Queue
from tests.receiver.signers import FORM, problem_of, receiver

ANSWERS: dict[str, dict[str, Any]] = {
    "good": {"success": True, "hostname": "www.example.com", "score": 0.9},
    "low": {"success": True, "hostname": "www.example.com", "score": 0.2},
    "elsewhere": {"success": True, "hostname": "evil.test", "score": 0.9},
    "bad": {"success": False, "error-codes": ["invalid-input-response"]},
}


@pytest.fixture
async def provider() -> AsyncIterator[tuple[TestServer, list[dict[str, str]]]]:
    """Turnstile, hCaptcha and reCAPTCHA siteverify stand-ins that record what they got."""
    calls: list[dict[str, str]] = []

    async def siteverify(request: web.Request) -> web.Response:
        form = dict(await request.post())
        calls.append({"provider": request.match_info["provider"], **form})  # type: ignore[dict-item]
        if form.get("secret") != "captcha-secret":
            return web.json_response({"success": False, "error-codes": ["invalid-input-secret"]})
        return web.json_response(ANSWERS.get(str(form.get("response")), ANSWERS["bad"]))

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=502)

    app = web.Application()
    app.router.add_post("/{provider}/siteverify", siteverify)
    app.router.add_post("/down/siteverify", broken)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, calls
    await server.close()


@pytest.fixture
def captcha_settings(make_settings: Any, provider: tuple[TestServer, Any]) -> Any:
    server, _ = provider
    return make_settings(
        turnstile_verify_url=str(server.make_url("/turnstile/siteverify")),
        hcaptcha_verify_url=str(server.make_url("/hcaptcha/siteverify")),
        recaptcha_verify_url=str(server.make_url("/recaptcha/siteverify")),
    )


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPTCHA_SECRET", "captcha-secret")


def form(**captcha: Any) -> dict[str, Any]:
    spec = {"secret": "env:CAPTCHA_SECRET", **captcha}
    return {"site": {"kind": "form", "preset": "generic-form", "captcha": spec}}


LEAD = "name=Ann+Lee&email=ann%40example.com"


async def test_turnstile_token_is_checked_before_anything_is_stored(
    captcha_settings: Any,
    redis: Redis,
    keys: Keys,
    queue: Queue,
    provider: tuple[TestServer, list[dict[str, str]]],
) -> None:
    _, calls = provider
    async with receiver(captcha_settings, redis, form(provider="turnstile")) as client:
        ok = await client.post(
            "/hooks/site", data=LEAD + "&cf-turnstile-response=good", headers=FORM
        )
        assert ok.status == 202, await ok.text()
        missing = await client.post("/hooks/site", data=LEAD, headers=FORM)
        assert "not solved" in (await problem_of(missing, 403, "captcha-failed"))["detail"]
        bad = await client.post(
            "/hooks/site", data=LEAD + "&cf-turnstile-response=bad", headers=FORM
        )
        assert "not accepted" in (await problem_of(bad, 403, "captcha-failed"))["detail"]
        record = await queue.records.get((await ok.json())["id"])
    assert [c["response"] for c in calls] == ["good", "bad"]  # a missing token costs no call
    assert calls[0] == {
        "provider": "turnstile",
        "secret": "captcha-secret",
        "response": "good",
        "remoteip": "127.0.0.1",
    }
    assert record is not None
    assert "cf-turnstile-response" not in json.loads(record.envelope or "")["body"]
    assert await redis.xlen(keys.stream) == 1


async def test_hcaptcha_reads_its_own_field(
    captcha_settings: Any, redis: Redis, provider: tuple[TestServer, list[dict[str, str]]]
) -> None:
    _, calls = provider
    async with receiver(captcha_settings, redis, form(provider="hcaptcha")) as client:
        wrong_field = await client.post(
            "/hooks/site", data=LEAD + "&cf-turnstile-response=good", headers=FORM
        )
        await problem_of(wrong_field, 403, "captcha-failed")
        ok = await client.post("/hooks/site", data=LEAD + "&h-captcha-response=good", headers=FORM)
        assert ok.status == 202
    assert [c["provider"] for c in calls] == ["hcaptcha"]


@pytest.mark.parametrize(("token", "status"), [("good", 202), ("low", 403), ("elsewhere", 403)])
async def test_recaptcha_score_and_hostname(
    captcha_settings: Any, redis: Redis, token: str, status: int
) -> None:
    spec = form(provider="recaptcha", min_score=0.5, hostnames=["www.example.com"])
    async with receiver(captcha_settings, redis, spec) as client:
        response = await client.post(
            "/hooks/site", json={"email": "ann@example.com", "g-recaptcha-response": token}
        )
        assert response.status == status


async def test_an_unreachable_provider_is_503_and_nothing_is_stored(
    make_settings: Any, redis: Redis, keys: Keys, provider: tuple[TestServer, Any]
) -> None:
    server, _ = provider
    settings = make_settings(turnstile_verify_url=str(server.make_url("/down/siteverify")))
    async with receiver(settings, redis, form(provider="turnstile")) as client:
        response = await client.post(
            "/hooks/site", data=LEAD + "&cf-turnstile-response=good", headers=FORM
        )
        await problem_of(response, 503, "captcha-unavailable")
    assert await redis.xlen(keys.stream) == 0


def test_a_captcha_secret_that_cannot_be_read_is_a_config_error() -> None:
    spec = form(provider="turnstile", secret="env:NO_SUCH_CAPTCHA_SECRET")
    with pytest.raises(ConfigError) as info:
        parse_sources({"sources": spec})
    assert [issue.path for issue in info.value.issues] == ["sources.site.captcha.secret"]
