"""Calendly's API: read the invitee a routing form submission names (``GET <submitter URI>``,
``Authorization: Bearer <personal access token>``, scope ``scheduled_events:read``).

The URI comes from the payload, so it is fetched only when it is an invitee of Calendly's API
(``<api>/scheduled_events/<uuid>/invitees/<uuid>``): the token is never sent anywhere else.
401/403 refuse the token (the source pauses), 429 pauses its fetches (``Retry-After``; the
limits themselves are not documented), 404 is tried again a few times, then ``dead``.
"""

from __future__ import annotations

import re
from typing import Any

from service.errors import (
    FetchAuthFailed,
    FetchNotFound,
    FetchRateLimited,
    FetchRefused,
    FetchUnavailable,
)
from service.providers.http import ProviderHTTP

PROVIDER = "calendly"
OFFICIAL = "https://api.calendly.com"
_INVITEE = re.compile(r"^/scheduled_events/[A-Za-z0-9-]+/invitees/[A-Za-z0-9-]+$")
RATE_PAUSE = 60.0


def invitee_url(uri: str, base_url: str) -> str | None:
    """The address to fetch for a submitter URI (on ``base_url``), or None when the URI is not
    a Calendly invitee."""
    for origin in dict.fromkeys((base_url.rstrip("/"), OFFICIAL)):
        if uri.startswith(origin + "/") and _INVITEE.match(uri[len(origin) :]):
            return base_url.rstrip("/") + uri[len(origin) :]
    return None


async def fetch_invitee(
    http: ProviderHTTP, base_url: str, uri: str, token: str
) -> tuple[dict[str, Any], float, str]:
    """The invitee (``{"resource": {...}}``), a pause (always 0: no usage headers), the
    request shown."""
    url = invitee_url(uri, base_url)
    if url is None:
        raise FetchRefused(
            f"{PROVIDER}: the submitter {uri[:200]!r} is not an invitee of Calendly's API; "
            "it is not fetched",
            provider=PROVIDER,
            code="fetch-refused",
        )
    answer = await http.get(PROVIDER, url, headers={"Authorization": f"Bearer {token}"})
    where = f"{PROVIDER}: GET {url}: {answer.status}"
    body = answer.body
    message = str(body.get("message") or body.get("title") or "") if isinstance(body, dict) else ""
    kw: dict[str, Any] = {"provider": PROVIDER, "status": answer.status, "body": body}
    if answer.status == 200 and isinstance(body, dict):
        return body, 0.0, f"GET {url}"
    if answer.status == 429:
        wait = float(answer.headers.get("Retry-After") or RATE_PAUSE)
        raise FetchRateLimited(f"{where}: {message}", retry_after=wait, **kw)
    if answer.status in (401, 403):
        raise FetchAuthFailed(f"{where}: the token is refused: {message}", **kw)
    if answer.status == 404:
        raise FetchNotFound(f"{where}: {message}", **kw)
    if answer.status >= 500:
        raise FetchUnavailable(f"{where}: {message}", **kw)
    raise FetchRefused(f"{where}: {message}", code="fetch-refused", **kw)
