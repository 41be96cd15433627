from __future__ import annotations

import pytest

from service.close.ratelimit import body_rate_reset, parse_ratelimit, wait_after_429


def test_ratelimit_header_parsed() -> None:
    info = parse_ratelimit({"RateLimit": "limit=100, remaining=7, reset=3"})
    assert info is not None
    assert (info.limit, info.remaining, info.reset) == (100, 7, 3)


def test_legacy_headers_parsed_when_modern_missing() -> None:
    info = parse_ratelimit(
        {"X-Rate-Limit-Limit": "600", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "14.5"}
    )
    assert info is not None
    assert info.reset == 14.5


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"RateLimit": "limit=10, remaining=0, reset=4", "Retry-After": "9"}, b"", 4.0),
        ({"Retry-After": "9", "X-Rate-Limit-Reset": "2.5"}, b"", 9.0),
        ({"X-Rate-Limit-Reset": "2.5"}, b'{"error": {"rate_reset": 7}}', 2.5),
        ({}, b'{"error": {"rate_reset": 0.130213}}', 0.130213),
        ({}, b'{"rate_reset": "0.595956", "rate_limit_type": "key"}', 0.595956),
        ({}, b"not json", None),
        ({"Retry-After": "soon"}, b"", None),
        ({"RateLimit": "limit=1, remaining=0, reset=100000"}, b"", 300.0),
    ],
)
def test_wait_after_429_order_of_precedence(
    headers: dict[str, str], body: bytes, expected: float | None
) -> None:
    assert wait_after_429(headers, body) == expected


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert wait_after_429({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


def test_body_rate_reset_ignores_negative_and_garbage() -> None:
    assert body_rate_reset({"error": {"rate_reset": -1}}) is None
    assert body_rate_reset([1, 2]) is None
