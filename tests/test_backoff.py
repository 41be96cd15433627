"""The retry schedule: full jitter, capped, and with the defaults it spans well over 48 hours."""

from __future__ import annotations

import random

from service.backoff import retry_delay
from service.config.settings import Settings


def test_delays_stay_under_the_doubling_ceiling_and_the_cap() -> None:
    random.seed(7)
    for attempt in range(1, 30):
        ceiling = min(3600.0, 5.0 * 2 ** (attempt - 1))
        delays = [retry_delay(attempt, base=5.0, cap=3600.0) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # full jitter spreads over the whole range


def test_default_schedule_spans_at_least_48_hours_before_dead() -> None:
    settings = Settings()
    spans = []
    for seed in range(200):
        rng_state = random.Random(seed)
        random.setstate(rng_state.getstate())
        elapsed, attempt = 0.0, 0
        while True:
            attempt += 1
            delay = retry_delay(
                attempt, base=settings.retry_base_seconds, cap=settings.retry_max_seconds
            )
            # The pipeline's rule: dead once attempts run out or the next try is past the deadline.
            if (
                attempt >= settings.retry_max_attempts
                or elapsed + delay > settings.retry_deadline_seconds
            ):
                break
            elapsed += delay
        spans.append(elapsed)
    assert min(spans) >= 48 * 3600
