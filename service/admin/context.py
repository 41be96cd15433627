"""What the admin plane knows, shared by its API and its dashboard: the admin tokens, the
trusted proxies, the limits of what it reads, and the queue once Redis is open. Held under the
admin sub-apps' own key. Request bodies are read here, as the door reads them
(``service/httpbody.py``): a broken one is a ``400`` problem, never a 500."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from service import httpbody
from service.admin.people import PersonFinder
from service.admin.views import Shown
from service.clientip import Network
from service.close.fieldnames import FieldNames
from service.config.settings import Settings
from service.problems import ProblemError
from service.queue import Queue


@dataclass(slots=True)
class AdminContext:
    tokens: tuple[str, ...]
    """Accepted admin bearer tokens (several while rotating)."""
    body_limit: int
    """The largest body an admin route reads (``max_body_bytes``)."""
    read_timeout: float
    """How long a body may take to arrive (``read_timeout_seconds``)."""
    session_seconds: int
    """How long a dashboard session lasts (``admin_session_seconds``)."""
    login_attempts: int
    """Wrong tokens a client may send per ``login_window_seconds`` (``sessions.py``)."""
    login_window_seconds: float
    trusted_proxies: tuple[Network, ...]
    """Proxies believed about ``X-Forwarded-Proto`` (the session cookie's Secure flag)."""
    lead_url: str
    """A lead's page, with ``{}`` for its id, when Close gave no URL."""
    people: PersonFinder
    """The dashboard's search (the receiver's mappers read the payloads)."""
    queue: Queue | None = None
    """Set by the receiver when its Redis client opens (:func:`service.admin.attach`)."""

    async def shown(self) -> Shown:
        """What showing records needs now: the lead URL, Close's field names (from Redis)."""
        queue = self.the_queue()
        names = await FieldNames(queue.redis, queue.keys, ttl=queue.record_ttl).read()
        return Shown(self.lead_url, names)

    @classmethod
    def from_settings(cls, settings: Settings, people: PersonFinder) -> AdminContext:
        return cls(
            tokens=settings.admin_tokens,
            body_limit=settings.max_body_bytes,
            read_timeout=settings.read_timeout_seconds,
            session_seconds=settings.admin_session_seconds,
            login_attempts=settings.admin_login_attempts,
            login_window_seconds=settings.admin_login_window_seconds,
            trusted_proxies=settings.trusted_networks,
            lead_url=settings.lead_url_template,
            people=people,
        )

    def the_queue(self) -> Queue:
        if self.queue is None:
            raise ProblemError(503, "queue-unavailable", "Redis is not connected yet")
        return self.queue


ADMIN = web.AppKey("admin", AdminContext)


def context(request: web.Request) -> AdminContext:
    return request.app[ADMIN]


def matching_token(given: str, tokens: Sequence[str]) -> str | None:
    """The configured token equal to ``given`` (every one compared, in constant time)."""
    found = None
    for token in tokens:
        if hmac.compare_digest(given.encode(), token.encode()):
            found = token
    return found


def _problem(error: httpbody.BodyError) -> ProblemError:
    return ProblemError(error.status, error.slug, error.detail)


async def request_text(request: web.Request, what: str) -> str:
    """The body as text in its declared charset (``400``/``408``/``413``/``415`` problems)."""
    admin = context(request)
    try:
        raw = await httpbody.read_body(request, admin.body_limit, admin.read_timeout)
        return httpbody.decode_text(raw, request.charset, what)
    except httpbody.BodyError as exc:
        raise _problem(exc) from None
