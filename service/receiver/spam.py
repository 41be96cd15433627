"""Spam and floods at the door: a honeypot field and rate limits held in Redis.

A filled honeypot is answered exactly like a success (a bot learns nothing) and stored as a
``rejected`` record with reason ``spam``; it is never queued. Rate limits are token buckets
shared by every receiver process (``service/queue/buckets.py``), per client address and per
source, taken in the same script that stores the submission (``service/queue/intake.py``);
over the limit is 429 with ``Retry-After`` in whole seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.exceptions import RedisError

from service.config.policy import HoneypotSpec, RateLimitSpec
from service.errors import OverLimit
from service.problems import ProblemError, rate_limited
from service.queue import Throttle
from service.queue.intake import Intake
from service.receiver.answers import closes, queue_down


def honeypot_filled(body: Any, spec: HoneypotSpec | None) -> bool:
    """True when the hidden field came back with something in it."""
    if spec is None or not isinstance(body, dict):
        return False
    value = body.get(spec.field)
    values = value if isinstance(value, list) else [value]
    return any(isinstance(v, str) and v.strip() for v in values) or any(
        v not in (None, "", [], {}) and not isinstance(v, str) for v in values
    )


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
    detail = {
        "client": "too many submissions from your address",
        "source": "this endpoint is receiving too many submissions",
    }.get(exc.kind, "too many submissions")
    return rate_limited(exc.wait, detail, headers)


class Tokens:
    """A request's rate-limit tokens, taken exactly once: by the script that stores the
    submission, or on their own when the request is refused before it gets there (then a
    request over a limit is answered 429, as if the limits had been checked first)."""

    def __init__(self, intake: Intake, throttles: tuple[Throttle, ...]) -> None:
        self.intake = intake
        self._unpaid = throttles

    def hand_over(self) -> tuple[Throttle, ...]:
        """The tokens still to take, for the script that stores the submission."""
        throttles, self._unpaid = self._unpaid, ()
        return throttles

    async def take(self, refused: ProblemError | None = None) -> None:
        """Take the tokens still to take now; 429 when over a limit (closing the connection
        when ``refused`` did: a body that was not read)."""
        throttles = self.hand_over()
        if not throttles:
            return
        try:
            await self.intake.take_tokens(throttles)
        except OverLimit as exc:
            closing = refused is not None and closes(refused)
            raise limited(exc, {"Connection": "close"} if closing else None) from None
        except (RedisError, OSError):
            raise queue_down() from None
