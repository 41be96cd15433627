"""HubSpot's CRM API: read one contact (``GET /crm/v3/objects/contacts/<id>?properties=...``)
with a private-app token (``Authorization: Bearer``).

401 (token invalid or expired) and 403 (missing scope ``crm.objects.contacts.read``) refuse
the token: the source's delivery pauses. 429 pauses the source's fetches for what HubSpot asks
(``Retry-After``; else the rolling ten seconds, or an hour for the daily limit), and so does a
``X-HubSpot-RateLimit-Remaining: 0`` on a success. A 404 right after ``contact.creation``
may be a race: tried again a few times before the submission ends ``dead``. Error bodies
(``status``, ``message``, ``category``, ``correlationId``...) are read defensively.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from service.errors import (
    FetchAuthFailed,
    FetchNotFound,
    FetchRateLimited,
    FetchRefused,
    FetchUnavailable,
)
from service.providers.http import Answer, ProviderHTTP

PROVIDER = "hubspot"
DEFAULT_PROPERTIES = (
    "email",
    "firstname",
    "lastname",
    "phone",
    "mobilephone",
    "company",
    "jobtitle",
    "website",
    "message",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "hs_analytics_source",
    "hs_analytics_source_data_1",
    "hs_analytics_first_url",
    "hs_analytics_first_referrer",
)
ROLLING_PAUSE = 10.0
DAILY_PAUSE = 3600.0


def rate_pause(headers: Mapping[str, str], body: Any = None) -> float:
    """Seconds to pause from a 429 or the rate-limit headers of a success (0: carry on)."""
    retry_after = _number(headers.get("Retry-After"))
    if retry_after:
        return retry_after
    policy = body.get("policyName") if isinstance(body, dict) else None
    if policy == "DAILY" or _number(headers.get("X-HubSpot-RateLimit-Daily-Remaining")) == 0.0:
        return DAILY_PAUSE
    interval = _number(headers.get("X-HubSpot-RateLimit-Interval-Milliseconds"))
    if (
        policy == "TEN_SECONDLY_ROLLING"
        or _number(headers.get("X-HubSpot-RateLimit-Remaining")) == 0
    ):
        return (interval / 1000.0) if interval else ROLLING_PAUSE
    return 0.0


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None and text.strip() else None
    except ValueError:
        return None


def _message(answer: Answer) -> str:
    body = answer.body
    if isinstance(body, dict):
        parts = [str(body.get(k)) for k in ("category", "message") if body.get(k)]
        return ": ".join(parts)[:300]
    return str(body or "")[:200]


async def fetch_contact(
    http: ProviderHTTP, base_url: str, contact_id: str, token: str, properties: Sequence[str]
) -> tuple[dict[str, Any], float, str]:
    """The contact, the seconds the source's fetches should pause now, the request shown."""
    url = f"{base_url}/crm/v3/objects/contacts/{contact_id}"
    wanted = ",".join(properties or DEFAULT_PROPERTIES)
    shown = f"GET {url}?properties={wanted}"
    answer = await http.get(
        PROVIDER,
        url,
        headers={"Authorization": f"Bearer {token}"},
        params={"properties": wanted, "archived": "false"},
    )
    where = f"{PROVIDER}: GET /crm/v3/objects/contacts/{contact_id}: {answer.status}"
    kw: dict[str, Any] = {"provider": PROVIDER, "status": answer.status, "body": answer.body}
    if answer.status == 200 and isinstance(answer.body, dict):
        return answer.body, rate_pause(answer.headers), shown
    if answer.status == 429:
        wait = rate_pause(answer.headers, answer.body) or ROLLING_PAUSE
        raise FetchRateLimited(f"{where}: {_message(answer)}", retry_after=wait, **kw)
    if answer.status in (401, 403):
        raise FetchAuthFailed(f"{where}: the token is refused: {_message(answer)}", **kw)
    if answer.status == 404:
        raise FetchNotFound(f"{where}: no such contact, or not readable yet", **kw)
    if answer.status >= 500:
        raise FetchUnavailable(f"{where}: {_message(answer)}", **kw)
    raise FetchRefused(f"{where}: {_message(answer)}", code="fetch-refused", **kw)
