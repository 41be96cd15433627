"""Test-side signers written from each provider's documentation, and a receiver helper.

They are deliberately independent of ``service.receiver.auth`` (no shared code), so a test
that signs here and verifies there checks our reading of the provider's scheme twice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.config.settings import Settings
from service.receiver.app import create_app
from tests.conftest import sources_from

PROBLEM = "application/problem+json"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _mac(key: str | bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(key.encode() if isinstance(key, str) else key, message, algorithm).digest()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def standard_webhooks(
    secret: str, body: bytes, *, msg_id: str = "msg_1", ts: int | None = None
) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    key = base64.b64decode(secret.removeprefix("whsec_"))
    sig = b64(_mac(key, f"{msg_id}.{ts}.".encode() + body))
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": f"v1,{sig}"}


def github(secret: str, body: bytes, delivery: str = "d-1") -> dict[str, str]:
    return {
        "X-Hub-Signature-256": "sha256=" + _mac(secret, body).hex(),
        "X-GitHub-Delivery": delivery,
    }


def typeform(secret: str, body: bytes) -> dict[str, str]:
    return {"Typeform-Signature": "sha256=" + b64(_mac(secret, body))}


def tally(secret: str, body: bytes) -> dict[str, str]:
    return {"Tally-Signature": b64(_mac(secret, body))}


def calcom(secret: str, body: bytes) -> dict[str, str]:
    return {"X-Cal-Signature-256": _mac(secret, body).hex()}


def webflow(secret: str, body: bytes, ts_ms: int | None = None) -> dict[str, str]:
    ts_ms = int(time.time() * 1000) if ts_ms is None else ts_ms
    return {
        "X-Webflow-Timestamp": str(ts_ms),
        "X-Webflow-Signature": _mac(secret, f"{ts_ms}:".encode() + body).hex(),
    }


def stripe_style(
    secret: str, body: bytes, header: str = "Stripe-Signature", t: int | None = None
) -> dict[str, str]:
    t = int(time.time()) if t is None else t
    return {header: f"t={t},v1=" + _mac(secret, f"{t}.".encode() + body).hex()}


def hubspot(
    secret: str, url: str, body: bytes, method: str = "POST", ts_ms: int | None = None
) -> dict[str, str]:
    ts_ms = int(time.time() * 1000) if ts_ms is None else ts_ms
    message = method.encode() + url.encode() + body + str(ts_ms).encode()
    return {
        "X-HubSpot-Signature-v3": b64(_mac(secret, message)),
        "X-HubSpot-Request-Timestamp": str(ts_ms),
    }


def meta(secret: str, body: bytes) -> dict[str, str]:
    """Meta: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(App Secret, body)>``."""
    return {"X-Hub-Signature-256": "sha256=" + _mac(secret, body).hex()}


def hubspot_v1(secret: str, body: bytes) -> dict[str, str]:
    """HubSpot v1: hex SHA-256 (not an HMAC) of client secret + body."""
    digest = hashlib.sha256(secret.encode() + body).hexdigest()
    return {"X-HubSpot-Signature": digest, "X-HubSpot-Signature-Version": "v1"}


def hubspot_v2(secret: str, url: str, body: bytes, method: str = "POST") -> dict[str, str]:
    """HubSpot v2: hex SHA-256 of client secret + method + URL + body."""
    digest = hashlib.sha256(secret.encode() + method.encode() + url.encode() + body).hexdigest()
    return {"X-HubSpot-Signature": digest, "X-HubSpot-Signature-Version": "v2"}


def netlify(secret: str, body: bytes, iss: str = "netlify") -> dict[str, str]:
    def seg(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    head = seg({"alg": "HS256", "typ": "JWT"})
    claims = seg({"iss": iss, "sha256": hashlib.sha256(body).hexdigest()})
    sig = base64.urlsafe_b64encode(_mac(secret, f"{head}.{claims}".encode())).rstrip(b"=")
    return {"X-Webhook-Signature": f"{head}.{claims}.{sig.decode()}"}


def hmac_timestamped(
    secret: str, body: bytes, *, ts: int, algorithm: str = "sha512", sep: str = "|"
) -> dict[str, str]:
    """A partner's own scheme: ``X-Sig: v=<base64 HMAC-SHA512 of "<ts>|<body>">``."""
    mac = _mac(secret, f"{ts}{sep}".encode() + body, algorithm)
    return {"X-Sig": "v=" + b64(mac), "X-Sig-Time": str(ts)}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + b64(f"{user}:{password}".encode())}


@asynccontextmanager
async def receiver(
    settings: Settings, redis: Redis, sources: dict[str, Any]
) -> AsyncIterator[TestClient[Any, Any]]:
    """A receiver for ``{"name": {source settings}}``, with the test's Redis prefix."""
    app = create_app(settings, sources_from({"sources": sources}), redis=redis)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def problem_of(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body: dict[str, Any] = await response.json(content_type=PROBLEM)
    assert body["type"] == f"urn:lead-intake:problem:{slug}"
    return body
