"""Signatures made by others: published vectors and the standardwebhooks reference library.

Each vector is accepted at its own time and refused when the body, the secret or the clock is
changed; the reference library's signatures are accepted over HTTP, and a replayed message id
makes no second submission.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict
from redis.asyncio import Redis
from standardwebhooks.webhooks import Webhook

from service.config.settings import Settings
from service.config.sources import parse_sources
from service.keys import Keys
from service.queue import Queue
from service.receiver.auth import AuthFailed, SignedRequest, Verifier, build_verifier, verify
from tests.receiver.signers import JSON, problem_of, receiver

VECTORS = Path(__file__).parent / "vectors"


def vector(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


def verifier_for(monkeypatch: pytest.MonkeyPatch, auth: dict[str, Any], secret: str) -> Verifier:
    monkeypatch.setenv("VECTOR_SECRET", secret)
    source = {"kind": "webhook", "preset": "generic-json", "auth": auth}
    source["auth"] = {**auth, "secrets": ["env:VECTOR_SECRET"]}
    spec = parse_sources({"sources": {"v": source}}).get("v")
    assert spec is not None and spec.auth is not None
    return build_verifier(spec.auth)


def request(
    body: str | bytes,
    headers: dict[str, str],
    now: float,
    url: str = "https://intake.example.com/hooks/v",
    method: str = "POST",
) -> SignedRequest:
    raw = body.encode() if isinstance(body, str) else body
    return SignedRequest(method, url, CIMultiDict(headers), {}, raw, now)


def refused(verifier: Verifier, signed: SignedRequest) -> str:
    with pytest.raises(AuthFailed) as info:
        verify(verifier, signed)
    return info.value.reason


def test_standard_webhooks_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    v = vector("standard-webhooks.json")
    verifier = verifier_for(monkeypatch, {"scheme": "standard-webhooks"}, v["secret"])
    headers = {
        "webhook-id": v["msg_id"],
        "webhook-timestamp": str(v["timestamp"]),
        "webhook-signature": v["signature"],
    }
    at = float(v["timestamp"])
    assert verify(verifier, request(v["payload"], headers, at)) == v["msg_id"]
    # Several signatures in one header, other versions ignored (the spec's multi-sig case).
    several = " ".join([v["invalid_signature"], v["other_version_signature"], v["signature"]])
    multi = {**headers, "webhook-signature": several}
    assert verify(verifier, request(v["payload"], multi, at)) == v["msg_id"]

    assert refused(verifier, request(v["payload"] + " ", headers, at)) == "bad-signature"
    bad = {**headers, "webhook-signature": v["invalid_signature"]}
    assert refused(verifier, request(v["payload"], bad, at)) == "bad-signature"
    other_id = {**headers, "webhook-id": "msg_other"}
    assert refused(verifier, request(v["payload"], other_id, at)) == "bad-signature"
    tolerance = v["tolerance_seconds"]
    for skew in (-tolerance - 1, tolerance + 1):
        assert refused(verifier, request(v["payload"], headers, at + skew)) == "stale-timestamp"
    wrong = verifier_for(monkeypatch, {"scheme": "standard-webhooks"}, "whsec_" + "QUJD" * 8)
    assert refused(wrong, request(v["payload"], headers, at)) == "bad-signature"


def test_github_docs_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    v = vector("github.json")
    verifier = verifier_for(monkeypatch, {"scheme": "github"}, v["secret"])
    headers = {v["header"]: v["signature"], "X-GitHub-Delivery": "72d3162e"}
    assert verify(verifier, request(v["payload"], headers, 0)) == "72d3162e"
    assert refused(verifier, request("Hello, World?", headers, 0)) == "bad-signature"
    wrong = verifier_for(monkeypatch, {"scheme": "github"}, "It's a Secret to Nobody")
    assert refused(wrong, request(v["payload"], headers, 0)) == "bad-signature"


def test_hubspot_library_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    v = vector("hubspot.json")
    verifier = verifier_for(monkeypatch, {"scheme": "hubspot-v3"}, v["client_secret"])
    headers = {
        "X-HubSpot-Signature-v3": v["signature"],
        "X-HubSpot-Request-Timestamp": str(v["timestamp"]),
    }
    at = v["timestamp"] / 1000
    signed = request(v["request_body"], headers, at, url=v["url"], method=v["http_method"])
    verify(verifier, signed)
    tampered = request(v["request_body"] + " ", headers, at, url=v["url"])
    assert refused(verifier, tampered) == "bad-signature"
    other_url = request(v["request_body"], headers, at, url=v["url"] + "2")
    assert refused(verifier, other_url) == "bad-signature"
    assert refused(verifier, request(v["request_body"], headers, at + 301, url=v["url"])) == (
        "stale-timestamp"
    )


def test_hubspot_docs_v1_and_v2_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    v = vector("hubspot-v1-v2.json")
    verifier = verifier_for(monkeypatch, {"scheme": "hubspot"}, v["client_secret"])
    at = 1_564_113_600.0  # v1 and v2 have no timestamp: any time is the same
    v1 = {"X-HubSpot-Signature": v["v1"]["signature"], "X-HubSpot-Signature-Version": "v1"}
    verify(verifier, request(v["v1"]["request_body"], v1, at))
    assert refused(verifier, request(v["v1"]["request_body"] + " ", v1, at)) == "bad-signature"
    # No version header: v1, as HubSpot's app webhooks sign.
    verify(
        verifier,
        request(v["v1"]["request_body"], {"X-HubSpot-Signature": v1["X-HubSpot-Signature"]}, at),
    )
    v2 = {"X-HubSpot-Signature": v["v2"]["signature"], "X-HubSpot-Signature-Version": "v2"}
    verify(verifier, request(v["v2"]["request_body"], v2, at, url=v["v2"]["url"]))
    other = request(v["v2"]["request_body"], v2, at, url=v["v2"]["url"] + "?x=1")
    assert refused(verifier, other) == "bad-signature"
    get = {"X-HubSpot-Signature": v["v2_get"]["signature"], "X-HubSpot-Signature-Version": "v2"}
    verify(verifier, request("", get, at, url=v["v2_get"]["url"], method="GET"))
    # hubspot-v3 accepts only v3: the same v1 signature is not enough.
    only_v3 = verifier_for(monkeypatch, {"scheme": "hubspot-v3"}, v["client_secret"])
    assert refused(only_v3, request(v["v1"]["request_body"], v1, at)) == "missing-signature"


def test_stripe_library_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    v = vector("stripe.json")
    verifier = verifier_for(monkeypatch, {"scheme": "stripe"}, v["secret"])
    headers = {"Stripe-Signature": v["header"]}
    at = float(v["timestamp"])
    verify(verifier, request(v["payload"], headers, at))
    assert verifier.after_parse(json.loads(v["payload"]))[1] == v["event_id"]
    # Stripe may send several v1 signatures (secret rolling); a bad one next to it is fine.
    rolled = {"Stripe-Signature": v["header"].replace("t=12345,", "t=12345,v1=00ff,")}
    verify(verifier, request(v["payload"], rolled, at))
    assert refused(verifier, request(v["payload"].replace("rdr_123", "rdr_124"), headers, at)) == (
        "bad-signature"
    )
    assert refused(verifier, request(v["payload"], headers, at + 301)) == "stale-timestamp"
    wrong = verifier_for(monkeypatch, {"scheme": "stripe"}, "whsec_other")
    assert refused(wrong, request(v["payload"], headers, at)) == "bad-signature"


@pytest.fixture
def reference_source(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("ACME_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    auth = {"scheme": "standard-webhooks", "secrets": ["env:ACME_WEBHOOK_SECRET"]}
    return {"acme": {"kind": "webhook", "preset": "generic-json", "auth": auth}}


async def test_reference_library_signs_what_the_receiver_accepts_once(
    settings: Settings,
    redis: Redis,
    keys: Keys,
    queue: Queue,
    reference_source: dict[str, Any],
) -> None:
    signer = Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    payload = json.dumps({"contact": {"email": "ref@example.com"}, "n": "é"}, ensure_ascii=False)
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_2QH3bP0",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign("msg_2QH3bP0", now, payload),
    }
    async with receiver(settings, redis, reference_source) as client:
        first = await client.post("/hooks/acme", data=payload.encode(), headers={**JSON, **headers})
        assert first.status == 202, await first.text()
        sub_id = (await first.json())["id"]
        # The sender retries the same message (same id, fresh signature): the first id, once.
        later = datetime.fromtimestamp(now.timestamp() + 30, UTC)
        retry = {
            **headers,
            "webhook-timestamp": str(int(later.timestamp())),
            "webhook-signature": signer.sign("msg_2QH3bP0", later, payload),
        }
        again = await client.post("/hooks/acme", data=payload.encode(), headers={**JSON, **retry})
        assert again.status == 200
        assert await again.json() == {"id": sub_id, "duplicate": True}
        # A captured copy replayed after the window is refused outright.
        old = datetime.fromtimestamp(now.timestamp() - 600, UTC)
        stale = {
            **headers,
            "webhook-timestamp": str(int(old.timestamp())),
            "webhook-signature": signer.sign("msg_2QH3bP0", old, payload),
        }
        replay = await client.post("/hooks/acme", data=payload.encode(), headers={**JSON, **stale})
        await problem_of(replay, 401, "unauthorized")
    assert await redis.xlen(keys.stream) == 1
    record = await queue.records.get(sub_id)
    assert record is not None and json.loads(record.envelope or "")["body"]["n"] == "é"
