"""What the admin plane knows, shared by its API and its dashboard: the admin tokens, the
trusted proxies, and the queue once Redis is open. Held under the admin sub-apps' own key."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from service.admin.people import PersonFinder
from service.admin.views import Shown
from service.clientip import Network
from service.close.fieldnames import FieldNames
from service.problems import ProblemError
from service.queue import Queue


@dataclass(slots=True)
class AdminContext:
    tokens: tuple[str, ...]
    """Accepted admin bearer tokens (several while rotating)."""
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
