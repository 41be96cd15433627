"""Reading Close's rate-limit signals: the ``RateLimit`` header, its older and fallback forms,
and the (deprecated) 429 body."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

_RATELIMIT = re.compile(
    r"limit=(?P<limit>\d+(?:\.\d+)?)\s*[,;]\s*remaining=(?P<remaining>\d+(?:\.\d+)?)"
    r"\s*[,;]\s*reset=(?P<reset>\d+(?:\.\d+)?)",
    re.IGNORECASE,
)
MAX_WAIT = 300.0


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    limit: float
    remaining: float
    reset: float


def parse_ratelimit(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """``RateLimit: limit=100, remaining=0, reset=1`` (the current header), else the older
    ``X-Rate-Limit-Limit/Remaining/Reset`` trio, else None."""
    value = headers.get("RateLimit")
    if value:
        match = _RATELIMIT.search(value)
        if match:
            return RateLimitInfo(
                float(match["limit"]), float(match["remaining"]), float(match["reset"])
            )
    legacy = [headers.get(f"X-Rate-Limit-{part}") for part in ("Limit", "Remaining", "Reset")]
    if all(legacy):
        try:
            return RateLimitInfo(*(float(v) for v in legacy if v is not None))
        except ValueError:
            return None
    return None


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def body_rate_reset(body: bytes | str | Any) -> float | None:
    """``rate_reset`` from a 429 body: wrapped in ``error`` or not, a number or a string."""
    data = body
    if isinstance(body, (bytes, str)):
        try:
            data = json.loads(body)
        except ValueError:
            return None
    if not isinstance(data, dict):
        return None
    inner = data.get("error")
    for holder in (inner, data):
        if isinstance(holder, dict) and "rate_reset" in holder:
            return _seconds(holder["rate_reset"])
    return None


def wait_after_429(headers: Mapping[str, str], body: bytes | str | Any = b"") -> float | None:
    """Seconds Close asks us to wait: ``RateLimit`` reset, then ``Retry-After``, then
    ``X-Rate-Limit-Reset``, then the body's ``rate_reset``. None when it says nothing usable."""
    value = headers.get("RateLimit")
    match = _RATELIMIT.search(value) if value else None
    candidates = (
        float(match["reset"]) if match else None,
        _retry_after(headers.get("Retry-After")),
        _seconds(headers.get("X-Rate-Limit-Reset")),
        body_rate_reset(body),
    )
    for wait in candidates:
        if wait is not None:
            return min(wait, MAX_WAIT)
    return None
