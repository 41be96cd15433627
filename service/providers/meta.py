"""Meta's Graph API: read one lead (``GET <graph>/<leadgen_id>?fields=...``) with a Page
access token, and read Meta's answers the way its error-handling and rate-limiting guides
describe them.

Errors come as ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``:

- 190 / 102 (token invalid, expired, session), 10 and 200-299 (permission), 3 (capability),
  368 (blocked): the token is refused: the source's delivery pauses until it works again;
- 4, 17, 32, 341, 613 (rate limits): the source's fetches pause;
- 100 (object does not exist, or cannot be read): the lead is not there (yet): tried again a
  few times, then the submission ends ``dead`` (``not-found``);
- 1, 2 (unknown, temporarily unavailable) and 5xx: tried again later.

``X-App-Usage`` and ``X-Business-Use-Case-Usage`` report how much of the limit is used; near
100% (or an ``estimated_time_to_regain_access``) the source's fetches pause before Meta says no.
"""

from __future__ import annotations

import json
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

PROVIDER = "meta-lead-ads"
DEFAULT_FIELDS = (
    "id",
    "created_time",
    "ad_id",
    "ad_name",
    "adset_id",
    "adset_name",
    "campaign_id",
    "campaign_name",
    "form_id",
    "field_data",
    "is_organic",
    "platform",
    "custom_disclaimer_responses",
)
AUTH_CODES = frozenset({3, 10, 102, 190, 368, *range(200, 300)})
RATE_CODES = frozenset({4, 17, 32, 341, 613})
TRANSIENT_CODES = frozenset({1, 2})
NOT_FOUND_CODE = 100
USAGE_HIGH = 95.0
"""Percent of a usage header at which fetches pause before Meta refuses them."""
USAGE_PAUSE = 60.0
"""Seconds fetches pause when usage is high and Meta gives no time to regain access."""
RATE_PAUSE = 300.0
"""Seconds fetches pause after a rate-limit error that names no time."""


def usage_pause(headers: Mapping[str, str]) -> float:
    """Seconds to pause from Meta's usage headers (0: carry on)."""
    pause = 0.0
    highest = 0.0
    app = _json(headers.get("X-App-Usage"))
    if isinstance(app, dict):
        highest = max([highest, *(_pct(v) for v in app.values())])
    business = _json(headers.get("X-Business-Use-Case-Usage"))
    if isinstance(business, dict):
        for entries in business.values():
            for entry in entries if isinstance(entries, list) else []:
                if not isinstance(entry, dict):
                    continue
                keys = ("call_count", "total_cputime", "total_time")
                highest = max([highest, *(_pct(entry.get(k)) for k in keys)])
                pause = max(pause, 60.0 * _pct(entry.get("estimated_time_to_regain_access")))
    if pause == 0.0 and highest >= USAGE_HIGH:
        pause = USAGE_PAUSE
    return pause


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _pct(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _error(answer: Answer) -> tuple[int | None, str]:
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    if not isinstance(error, dict):
        return None, str(answer.body)[:200] if answer.body else ""
    code = error.get("code")
    subcode = error.get("error_subcode")
    text = str(error.get("message") or "")[:300]
    if subcode is not None:
        text += f" (subcode {subcode})"
    return (code if isinstance(code, int) else None), text


async def fetch_lead(
    http: ProviderHTTP, base_url: str, lead_id: str, token: str, fields: Sequence[str]
) -> tuple[dict[str, Any], float, str]:
    """The lead, the seconds the source's fetches should pause now (usage), and the request
    as it may be shown (without the token)."""
    url = f"{base_url}/{lead_id}"
    wanted = ",".join(fields or DEFAULT_FIELDS)
    shown = f"GET {url}?fields={wanted}"
    answer = await http.get(PROVIDER, url, params={"access_token": token, "fields": wanted})
    pause = usage_pause(answer.headers)
    if answer.status == 200 and isinstance(answer.body, dict):
        return answer.body, pause, shown
    code, text = _error(answer)
    where = f"{PROVIDER}: GET /{lead_id}: {answer.status}"
    kw: dict[str, Any] = {"provider": PROVIDER, "status": answer.status, "body": answer.body}
    if code in RATE_CODES or answer.status == 429:
        raise FetchRateLimited(
            f"{where}: rate limited (code {code}): {text}", retry_after=pause or RATE_PAUSE, **kw
        )
    if code in AUTH_CODES or answer.status == 401:
        raise FetchAuthFailed(f"{where}: the token is refused (code {code}): {text}", **kw)
    if code == NOT_FOUND_CODE or answer.status == 404:
        raise FetchNotFound(f"{where}: no such lead, or not readable yet: {text}", **kw)
    if code in TRANSIENT_CODES or answer.status >= 500:
        raise FetchUnavailable(f"{where}: {text}", **kw)
    raise FetchRefused(f"{where}: refused (code {code}): {text}", code="fetch-refused", **kw)
