"""Spam and floods at the door: a honeypot field and rate limits held in Redis.

A filled honeypot is answered exactly like a success (a bot learns nothing) and stored as a
``rejected`` record with reason ``spam``; it is never queued. Rate limits are token buckets
shared by every receiver process (``service/queue/buckets.py``), per client address and per
source; over the limit is 429 with ``Retry-After`` in whole seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.config.policy import HoneypotSpec, Rate, RateLimitSpec
from service.problems import rate_limited
from service.queue.intake import Intake


def honeypot_filled(body: Any, spec: HoneypotSpec | None) -> bool:
    """True when the hidden field came back with something in it."""
    if spec is None or not isinstance(body, dict):
        return False
    value = body.get(spec.field)
    values = value if isinstance(value, list) else [value]
    return any(isinstance(v, str) and v.strip() for v in values) or any(
        v not in (None, "", [], {}) and not isinstance(v, str) for v in values
    )


def without_fields(body: Any, names: Iterable[str | None]) -> Any:
    """``body`` without the form's control fields (honeypot, CAPTCHA token, ``_redirect``)."""
    drop = {name for name in names if name}
    if not drop or not isinstance(body, dict):
        return body
    return {key: value for key, value in body.items() if key not in drop}


async def _take(intake: Intake, scope: str, rate: Rate) -> float:
    return await intake.take_token(scope, rate=rate.per_second, capacity=rate.count)


async def check_rates(
    intake: Intake, source: str, client: str | None, spec: RateLimitSpec | None
) -> None:
    """Raise 429 when the client, or the source as a whole, is over its limit."""
    if spec is None:
        return
    if spec.per_client is not None and client:
        wait = await _take(intake, f"ip:{source}:{client}", spec.per_client)
        if wait > 0:
            raise rate_limited(wait, "too many submissions from your address")
    if spec.per_source is not None:
        wait = await _take(intake, f"source:{source}", spec.per_source)
        if wait > 0:
            raise rate_limited(wait, "this endpoint is receiving too many submissions")
