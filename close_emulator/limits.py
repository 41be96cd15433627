"""Rate limiting of the Close emulator: endpoint groups, token buckets, headers, 429 bodies.

Close limits each endpoint group (a set of paths + methods) per API key and per organisation
(close-api.md §2). Each limit here is a token bucket holding ``limit`` tokens that refills
completely in ``window`` seconds. The ``RateLimit`` header describes the bucket closest to
empty; ``reset`` is the whole seconds (rounded up) until that bucket is full again.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from close_emulator.options import EmulatorOptions


@dataclass(frozen=True, slots=True)
class GroupRule:
    """Requests with one of ``methods`` and a path matching ``pattern`` form group ``name``."""

    name: str
    methods: frozenset[str]
    pattern: re.Pattern[str]


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# First match wins. Close does not publish its groups; this split follows the doc's examples
# (lead reads vs activity writes as separate groups, search apart).
ENDPOINT_GROUPS: tuple[GroupRule, ...] = (
    GroupRule("search", frozenset({"POST"}), re.compile(r"^/api/v1/data/search/")),
    GroupRule("activity_write", _WRITES, re.compile(r"^/api/v1/activity/")),
    GroupRule("lead_write", _WRITES, re.compile(r"^/api/v1/(lead|contact)/")),
    GroupRule("task_write", _WRITES, re.compile(r"^/api/v1/task/")),
    GroupRule("opportunity_write", _WRITES, re.compile(r"^/api/v1/opportunity/")),
    GroupRule("sequence_write", _WRITES, re.compile(r"^/api/v1/sequence_subscription/")),
    GroupRule("read", frozenset({"GET", "HEAD"}), re.compile(r"^/api/v1/")),
)
DEFAULT_GROUP = "other"


def endpoint_group(method: str, path: str) -> str:
    for rule in ENDPOINT_GROUPS:
        if method in rule.methods and rule.pattern.match(path):
            return rule.name
    return DEFAULT_GROUP


@dataclass(slots=True)
class TokenBucket:
    limit: int
    window: float
    tokens: float
    updated: float

    @property
    def rate(self) -> float:
        return self.limit / self.window

    def refill(self, now: float) -> None:
        self.tokens = min(float(self.limit), self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    @property
    def remaining(self) -> int:
        return max(0, math.floor(self.tokens + 1e-9))

    def until_full(self) -> float:
        return max(0.0, (self.limit - self.tokens) / self.rate)

    def until_token(self) -> float:
        return max(0.0, (1.0 - self.tokens) / self.rate)


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """What one request learned about its limit: for headers and the 429 body."""

    allowed: bool
    group: str
    limit_type: str
    limit: int
    window: float
    remaining: int
    reset: float
    retry_after: float


class RateLimiter:
    """Token buckets keyed by (scope, group); rebuilt when the configured numbers change."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def clear(self) -> None:
        self._buckets.clear()

    def _bucket(self, scope: str, group: str, limit: int, window: float, now: float) -> TokenBucket:
        bucket = self._buckets.get((scope, group))
        if bucket is None or bucket.limit != limit or bucket.window != window:
            bucket = TokenBucket(limit, window, float(limit), now)
            self._buckets[(scope, group)] = bucket
        bucket.refill(now)
        return bucket

    def take(
        self, options: EmulatorOptions, key: str, group: str, now: float
    ) -> LimitStatus | None:
        """Spend one token from every applicable bucket; None when no limit is configured."""
        window = options.rate_window
        candidates: list[tuple[str, TokenBucket]] = []
        key_limit = options.group_rate_limits.get(group, options.rate_limit)
        if key_limit is not None:
            candidates.append(("key", self._bucket(f"key:{key}", group, key_limit, window, now)))
        if options.org_rate_limit is not None:
            org = self._bucket("org", group, options.org_rate_limit, window, now)
            candidates.append(("org", org))
        if not candidates:
            return None
        empty = [(kind, bucket) for kind, bucket in candidates if bucket.tokens < 1.0 - 1e-9]
        if empty:
            kind, bucket = max(empty, key=lambda item: item[1].until_token())
            return _status(False, group, kind, bucket)
        for _, bucket in candidates:
            bucket.tokens -= 1.0
        kind, bucket = min(candidates, key=lambda item: item[1].tokens / item[1].limit)
        return _status(True, group, kind, bucket)


def _status(allowed: bool, group: str, kind: str, bucket: TokenBucket) -> LimitStatus:
    return LimitStatus(
        allowed=allowed,
        group=group,
        limit_type=kind,
        limit=bucket.limit,
        window=bucket.window,
        remaining=bucket.remaining,
        reset=bucket.until_full(),
        retry_after=bucket.until_token(),
    )


def _whole_seconds(seconds: float) -> int:
    return max(0, math.ceil(seconds - 1e-9))


def limit_headers(status: LimitStatus, options: EmulatorOptions) -> dict[str, str]:
    headers: dict[str, str] = {}
    if options.rate_limit_header:
        headers["RateLimit"] = (
            f"limit={status.limit}, remaining={status.remaining}, "
            f"reset={_whole_seconds(status.reset)}"
        )
    if options.legacy_rate_limit_headers:
        headers["X-Rate-Limit-Limit"] = str(status.limit)
        headers["X-Rate-Limit-Remaining"] = str(status.remaining)
        headers["X-Rate-Limit-Reset"] = f"{status.reset:.6f}"
    if not status.allowed and options.retry_after_header:
        headers["Retry-After"] = str(max(1, _whole_seconds(status.retry_after)))
    return headers


def limit_body(status: LimitStatus, options: EmulatorOptions) -> Any:
    """The (deprecated) 429 body in the configured shape; None means no body."""
    if options.rate_limit_body == "none":
        return None
    window: float | int = int(status.window) if status.window.is_integer() else status.window
    fields: dict[str, Any] = {
        "message": "API call count exceeded for this period",
        "rate_reset": round(status.retry_after, 6),
        "rate_limit": status.limit,
        "rate_window": window,
        "rate_limit_type": status.limit_type,
        "rate_endpoint_group": status.group,
    }
    if options.rate_limit_body == "flat":
        # As one recorded response had it: no wrapper, rate_reset as a string.
        return {**fields, "rate_reset": f"{status.retry_after:.6f}"}
    return {"error": fields}
