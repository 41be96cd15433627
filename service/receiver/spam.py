"""Spam and floods at the door: a honeypot field and rate limits held in Redis.

A filled honeypot is answered exactly like a success (a bot learns nothing) and stored as a
``rejected`` record with reason ``spam``; it is never queued. Rate limits are token buckets
shared by every receiver process (``service/queue/buckets.py``), per client address and per
source, taken in the same script that stores the submission (``service/queue/intake.py``);
over the limit is 429 with ``Retry-After`` in whole seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from service.config.policy import HoneypotSpec, RateLimitSpec
from service.errors import OverLimit
from service.problems import ProblemError
from service.queue import Throttle


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


def throttles(source: str, client: str | None, spec: RateLimitSpec | None) -> tuple[Throttle, ...]:
    """The buckets a request to ``source`` from ``client`` takes a token from, client first."""
    if spec is None:
        return ()
    found = []
    if spec.per_client is not None and client:
        rate = spec.per_client
        found.append(Throttle("client", f"ip:{source}:{client}", rate.per_second, rate.count))
    if spec.per_source is not None:
        rate = spec.per_source
        found.append(Throttle("source", f"source:{source}", rate.per_second, rate.count))
    return tuple(found)


def limited(exc: OverLimit, headers: Mapping[str, str] | None = None) -> ProblemError:
    """The 429 for a request over a limit, with ``Retry-After`` in whole seconds."""
    seconds = max(1, math.ceil(exc.wait))
    detail = {
        "client": "too many submissions from your address",
        "source": "this endpoint is receiving too many submissions",
    }.get(exc.kind, "too many submissions")
    return ProblemError(
        429,
        "rate-limited",
        f"{detail}; try again in {seconds} s",
        headers={**(headers or {}), "Retry-After": str(seconds)},
    )
