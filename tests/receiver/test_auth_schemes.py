"""Every auth scheme at the door: a signed request is queued; a tampered body, a wrong secret,
a stale timestamp or missing credentials get 401 and nothing is stored; a rotated-out secret
still listed keeps working."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis

from service.config.settings import Settings
from service.keys import Keys
from tests.receiver import signers
from tests.receiver.signers import JSON, problem_of, receiver

Signed = tuple[bytes, dict[str, str], dict[str, str]]
NOW = time.time


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def _headers(fn: Callable[[str, bytes], dict[str, str]]) -> Callable[..., Signed]:
    def sign(secret: str, payload: dict[str, Any], url: str, stale: bool = False) -> Signed:
        body = _json(payload)
        return body, fn(secret, body), {}

    return sign


@dataclass(frozen=True)
class Case:
    id: str
    auth: dict[str, Any]
    sign: Callable[..., Signed]
    secrets: tuple[str, str] = ("new-secret-7f3a", "old-secret-91c2")
    signs_body: bool = True
    stale: bool = False  # the scheme has a timestamp window


def _std(secret: str, payload: dict[str, Any], url: str, stale: bool = False) -> Signed:
    body = _json(payload)
    ts = int(NOW()) - (600 if stale else 0)
    return body, signers.standard_webhooks(secret, body, msg_id=uuid.uuid4().hex, ts=ts), {}


def _webflow(secret: str, payload: dict[str, Any], url: str, stale: bool = False) -> Signed:
    body = _json(payload)
    ts_ms = int(NOW() * 1000) - (600_000 if stale else 0)
    return body, signers.webflow(secret, body, ts_ms), {}


def _stripe(header: str) -> Callable[..., Signed]:
    def sign(secret: str, payload: dict[str, Any], url: str, stale: bool = False) -> Signed:
        body = _json(payload)
        t = int(NOW()) - (900 if stale else 0)
        return body, signers.stripe_style(secret, body, header, t), {}

    return sign


def _hubspot(secret: str, payload: dict[str, Any], url: str, stale: bool = False) -> Signed:
    body = _json(payload)
    ts_ms = int(NOW() * 1000) - (600_000 if stale else 0)
    return body, signers.hubspot(secret, url, body, ts_ms=ts_ms), {}


def _hubspot_v2(secret: str, payload: dict[str, Any], url: str, stale: bool = False) -> Signed:
    body = _json(payload)
    return body, signers.hubspot_v2(secret, url, body), {}


def _partner(secret: str, payload: dict[str, Any], url: str, stale: bool = False) -> Signed:
    body = _json(payload)
    ts = int(NOW() * 1000) - (600_000 if stale else 0)
    return body, signers.hmac_timestamped(secret, body, ts=ts), {}


def _github(secret: str, payload: dict[str, Any], url: str, stale: bool = False) -> Signed:
    body = _json(payload)
    return body, signers.github(secret, body, delivery=uuid.uuid4().hex), {}


def _google(secret: str, payload: dict[str, Any], url: str, stale: bool = False) -> Signed:
    return _json({**payload, "google_key": secret}), {}, {}


def _bearer_query(secret: str, payload: dict[str, Any], url: str, stale: bool = False) -> Signed:
    return _json(payload), {}, {"token": secret}


CASES = [
    Case(
        "standard-webhooks",
        {"scheme": "standard-webhooks"},
        _std,
        secrets=(signers.WHSEC, "whsec_c2Vjb25kLXNpZ25pbmcta2V5LTEyMzQ1Ng=="),
        stale=True,
    ),
    Case("github", {"scheme": "github"}, _github),
    Case("typeform", {"scheme": "typeform"}, _headers(signers.typeform)),
    Case("tally", {"scheme": "tally"}, _headers(signers.tally)),
    Case("calcom", {"scheme": "calcom"}, _headers(signers.calcom)),
    Case("webflow", {"scheme": "webflow"}, _webflow, stale=True),
    Case("stripe", {"scheme": "stripe"}, _stripe("Stripe-Signature"), stale=True),
    Case("calendly", {"scheme": "calendly"}, _stripe("Calendly-Webhook-Signature"), stale=True),
    Case("hubspot-v3", {"scheme": "hubspot-v3"}, _hubspot, stale=True),
    Case("hubspot-signing-v3", {"scheme": "hubspot"}, _hubspot, stale=True),
    Case("hubspot-v1", {"scheme": "hubspot"}, _headers(signers.hubspot_v1)),
    Case("hubspot-v2", {"scheme": "hubspot"}, _hubspot_v2),
    Case("meta", {"scheme": "meta"}, _headers(signers.meta)),
    Case("netlify", {"scheme": "netlify"}, _headers(signers.netlify)),
    Case(
        "hmac-sha512-base64-ms",
        {
            "scheme": "hmac",
            "header": "X-Sig",
            "algorithm": "sha512",
            "encoding": "base64",
            "prefix": "v=",
            "signed": "timestamp+body",
            "separator": "|",
            "timestamp_header": "X-Sig-Time",
            "timestamp_unit": "ms",
        },
        _partner,
        stale=True,
    ),
    Case(
        "bearer", {"scheme": "bearer"}, _headers(lambda s, b: signers.bearer(s)), signs_body=False
    ),
    Case(
        "bearer-header",
        {"scheme": "bearer", "header": "X-Api-Key"},
        _headers(lambda s, b: {"X-Api-Key": s}),
        signs_body=False,
    ),
    Case(
        "bearer-query",
        {"scheme": "bearer", "query_param": "token"},
        _bearer_query,
        signs_body=False,
    ),
    Case(
        "basic",
        {"scheme": "basic", "username": "acme"},
        _headers(lambda s, b: signers.basic("acme", s)),
        signs_body=False,
    ),
    Case("body-key", {"scheme": "body-key"}, _google, signs_body=False),
]


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Case:
    params: Case = request.param
    monkeypatch.setenv("HOOK_SECRET_NEW", params.secrets[0])
    monkeypatch.setenv("HOOK_SECRET_OLD", params.secrets[1])
    return params


def _source(case: Case) -> dict[str, Any]:
    auth = {**case.auth, "secrets": ["env:HOOK_SECRET_NEW", "env:HOOK_SECRET_OLD"]}
    return {"hook": {"kind": "webhook", "preset": "generic-json", "auth": auth}}


async def test_signed_posts_are_queued_and_forgeries_refused(
    case: Case, settings: Settings, redis: Redis, keys: Keys
) -> None:
    new, old = case.secrets
    async with receiver(settings, redis, _source(case)) as client:
        url = str(client.make_url("/hooks/hook"))

        async def post(signed: Signed) -> Any:
            body, headers, query = signed
            return await client.post(
                "/hooks/hook", data=body, headers={**JSON, **headers}, params=query
            )

        ok = await post(case.sign(new, {"email": "a@example.com"}, url))
        assert ok.status == 202, await ok.text()
        rotated = await post(case.sign(old, {"email": "b@example.com"}, url))
        assert rotated.status == 202, await rotated.text()

        refused = [await post(case.sign("not-the-secret", {"email": "c@example.com"}, url))]
        refused.append(await post((_json({"email": "d@example.com"}), {}, {})))
        if case.signs_body:
            body, headers, query = case.sign(new, {"email": "e@example.com"}, url)
            refused.append(await post((body.replace(b"e@", b"x@"), headers, query)))
        if case.stale:
            refused.append(await post(case.sign(new, {"email": "f@example.com"}, url, True)))
        details = {(await problem_of(r, 401, "unauthorized"))["detail"] for r in refused}
        assert details == {"the request could not be authenticated"}
    assert await redis.xlen(keys.stream) == 2


async def test_body_key_is_not_stored(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch, queue: Any
) -> None:
    monkeypatch.setenv("GOOGLE_KEY", "g-key-123")
    sources = {
        "gads": {"kind": "webhook", "preset": "google-ads", "auth": {"secrets": ["env:GOOGLE_KEY"]}}
    }
    payload = {"lead_id": "L1", "google_key": "g-key-123", "user_column_data": []}
    async with receiver(settings, redis, sources) as client:
        response = await client.post("/hooks/gads", json=payload)
        assert response.status == 202
        record = await queue.records.get((await response.json())["id"])
    stored = json.loads(record.envelope)
    assert "google_key" not in stored["body"] and stored["body"]["lead_id"] == "L1"
    assert "g-key-123" not in record.envelope


async def test_query_token_is_not_stored(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch, queue: Any
) -> None:
    monkeypatch.setenv("UNBOUNCE_TOKEN", "tok-55")
    auth = {"scheme": "bearer", "query_param": "token", "secrets": ["env:UNBOUNCE_TOKEN"]}
    sources = {"ub": {"kind": "webhook", "preset": "generic-json", "auth": auth}}
    async with receiver(settings, redis, sources) as client:
        response = await client.post(
            "/hooks/ub?token=tok-55&utm_source=lp", json={"email": "a@example.com"}
        )
        assert response.status == 202
        record = await queue.records.get((await response.json())["id"])
    assert json.loads(record.envelope)["query"] == {"utm_source": "lp"}


async def test_hubspot_behind_a_proxy_signs_the_public_url(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBSPOT_SECRET", "hs-secret")
    public = "https://intake.example.com/hooks/hs"
    auth = {"scheme": "hubspot-v3", "url": public, "secrets": ["env:HUBSPOT_SECRET"]}
    body = b'{"email": "a@example.com"}'
    async with receiver(
        settings, redis, {"hs": {"kind": "webhook", "preset": "generic-json", "auth": auth}}
    ) as client:
        # HubSpot signed the URL it called, with @ and : in the query decoded.
        signed = signers.hubspot("hs-secret", public + "?who=a@b:c", body)
        response = await client.post(
            "/hooks/hs?who=a%40b%3Ac", data=body, headers={**JSON, **signed}
        )
        assert response.status == 202, await response.text()
        seen_by_receiver = str(client.make_url("/hooks/hs?who=a%40b%3Ac"))
        wrong = signers.hubspot("hs-secret", seen_by_receiver, body)
        response = await client.post(
            "/hooks/hs?who=a%40b%3Ac", data=body, headers={**JSON, **wrong}
        )
        assert response.status == 401


async def test_svix_prefix_reads_svix_headers(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SVIX_SECRET", signers.WHSEC)
    auth = {"scheme": "standard-webhooks", "header_prefix": "svix", "secrets": ["env:SVIX_SECRET"]}
    body = b'{"email": "a@example.com"}'
    std = signers.standard_webhooks(signers.WHSEC, body, msg_id="msg_svix")
    svix = {k.replace("webhook-", "svix-"): v for k, v in std.items()}
    async with receiver(
        settings, redis, {"sv": {"kind": "webhook", "preset": "generic-json", "auth": auth}}
    ) as client:
        assert (await client.post("/hooks/sv", data=body, headers={**JSON, **std})).status == 401
        first = await client.post("/hooks/sv", data=body, headers={**JSON, **svix})
        again = await client.post("/hooks/sv", data=body, headers={**JSON, **svix})
        assert (first.status, again.status) == (202, 200)
        assert (await again.json())["id"] == (await first.json())["id"]  # svix-id is the event
