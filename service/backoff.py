"""When to try again after a failure: the one backoff formula of Lead Intake, used by the
Close client between in-request retries and by the worker's retry schedule."""

from __future__ import annotations

import random


def retry_delay(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2^(attempt-1)))."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography
