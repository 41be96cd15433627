"""Dashboard sessions: a signed cookie, revoked on logout for every replica, expiring on its
own; and the throttle on wrong admin tokens per client.

The cookie is ``intake_admin=<issued>.<nonce>.<HMAC-SHA256(token, issued, nonce)>``: never the
token, so every receiver replica with the same tokens accepts it, and taking a token out of
``INTAKE_ADMIN_TOKEN`` ends the sessions opened with it. A session ends
``INTAKE_ADMIN_SESSION_SECONDS`` after login, or at logout: logging out puts the cookie's
digest on a revocation list in Redis (``Keys.admin_revoked``, kept until the cookie would
have expired anyway), which every replica checks, so a copied cookie is refused everywhere
after logout. Redis out of reach: no session is believed (the pages answer 503).

Wrong tokens (the login form, a bearer token of the admin API) cost the client a token of a
shared bucket (``queue/buckets.py``; the client's address by ``clientip.py``, through trusted
proxies only): ``INTAKE_ADMIN_LOGIN_ATTEMPTS`` per ``INTAKE_ADMIN_LOGIN_WINDOW_SECONDS``. Once
they are used up, every attempt from that address is refused (429) before the token is even
compared, a right one too, so guessing learns nothing until the bucket refills.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from aiohttp import web

from service.admin.context import context
from service.clientip import client_ip
from service.queue import buckets

COOKIE = "intake_admin"
_COOKIE = re.compile(r"([0-9]{1,12})\.([0-9a-f]{16})\.([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class Session:
    csrf: str
    """The token every form of this session carries."""
    cookie: str
    expires_at: float


def _mac(token: str, message: str) -> str:
    return hmac.new(token.encode(), message.encode(), hashlib.sha256).hexdigest()


def _signed(issued: int, nonce: str) -> str:
    return f"lead-intake dashboard session|{issued}|{nonce}"


def session_cookie(token: str, now: float | None = None) -> str:
    """A new session's cookie value, signed with ``token``."""
    issued = int(time.time() if now is None else now)
    nonce = secrets.token_hex(8)
    return f"{issued}.{nonce}.{_mac(token, _signed(issued, nonce))}"


def _digest(cookie: str) -> str:
    """What the revocation list holds of a cookie (never the cookie itself)."""
    return hashlib.sha256(cookie.encode()).hexdigest()[:32]


async def session_of(request: web.Request) -> Session | None:
    """The request's valid session, or None (no cookie, forged, expired, token withdrawn,
    logged out). Raises RedisError when the revocation list cannot be read."""
    value = request.cookies.get(COOKIE, "")
    match = _COOKIE.fullmatch(value)
    if match is None:
        return None
    issued, nonce, signature = int(match[1]), match[2], match[3]
    admin = context(request)
    now = time.time()
    if not now - admin.session_seconds <= issued <= now + 60:
        return None
    found = None
    for token in admin.tokens:
        if hmac.compare_digest(_mac(token, _signed(issued, nonce)), signature):
            found = token
    if found is None:
        return None
    queue = admin.the_queue()
    if await queue.redis.exists(queue.keys.admin_revoked(_digest(value))):
        return None
    csrf = _mac(found, f"lead-intake dashboard csrf|{signature}")[:32]
    return Session(csrf=csrf, cookie=value, expires_at=issued + admin.session_seconds)


async def revoke(request: web.Request, session: Session) -> None:
    """End ``session`` on every replica: its cookie is refused from now on."""
    queue = context(request).the_queue()
    ttl = max(1, int(session.expires_at - time.time()) + 61)  # a little past its own expiry
    await queue.redis.set(queue.keys.admin_revoked(_digest(session.cookie)), "1", ex=ttl)


# -- wrong tokens, per client -------------------------------------------------------------------


def client_of(request: web.Request) -> str:
    """The client's address (``X-Forwarded-For`` only from a trusted proxy)."""
    admin = context(request)
    forwarded = request.headers.getall("X-Forwarded-For", []) if admin.trusted_proxies else []
    return client_ip(request.remote, forwarded, admin.trusted_proxies) or "unknown"


async def _bucket(request: web.Request, most: int) -> float:
    admin = context(request)
    queue = admin.the_queue()
    bucket = queue.keys.throttle(f"admin-login:{client_of(request)}")
    rate = admin.login_attempts / admin.login_window_seconds
    _, wait_ms = await buckets.TAKE.bind(queue.redis)(
        buckets.BucketKeys(bucket, buckets.no_pause(bucket)),
        buckets.BucketArgs(buckets.now_ms(), rate, admin.login_attempts, 1, most),
    )
    return max(0.0, int(wait_ms) / 1000.0)


async def attempts_wait(request: web.Request) -> float:
    """0.0 while this client may still try a token, else the seconds until it may again
    (nothing is taken: a right token costs nothing)."""
    return await _bucket(request, most=0)


async def wrong_token(request: web.Request) -> None:
    """Count a wrong token against this client."""
    await _bucket(request, most=1)
