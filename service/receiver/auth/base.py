"""What every scheme's verifier shares: the request as signed, the failure, the counters.

A verifier sees the raw bytes before anything parses them, compares in constant time, and
raises :class:`AuthFailed` with a short machine-readable ``reason`` (for logs and metrics;
the sender only ever sees one generic 401).
"""

from __future__ import annotations

import hmac
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

REASONS = (
    "missing-signature",
    "malformed-signature",
    "bad-signature",
    "missing-timestamp",
    "stale-timestamp",
    "missing-credentials",
    "bad-credentials",
    "no-secret",
)


class AuthFailed(Exception):
    """The request is not proven to come from the sender; ``reason`` is one of REASONS."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(slots=True)
class SignedRequest:
    """The parts of a request a scheme may sign. ``headers`` is case-insensitive; ``url`` is
    empty unless the verifier ``signs_url``. (Made for every signed request and read only:
    not frozen, whose ``__init__`` costs more per field.)"""

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    now: float


class Verifier(ABC):
    """One source's configured scheme, with its secrets already read."""

    scheme: str
    secrets: tuple[str, ...]
    signs_url: bool = False
    """True when the scheme signs the request URL (else the door does not build it)."""
    handshakes: bool = False
    """True when the sender verifies the endpoint with a GET first (Meta's subscription)."""

    @abstractmethod
    def verify(self, request: SignedRequest) -> str | None:
        """Raise AuthFailed unless the request is authentic; return the sender's event id
        when the scheme carries one (delivery dedup), else None."""

    def after_parse(self, body: Any) -> tuple[Any, str | None]:
        """Checks that need the parsed body (a key inside it); returns the body to store
        (without credentials) and an event id read from it, if any."""
        return body, None

    def handshake(self, query: Mapping[str, str]) -> str:
        """The answer to the sender's verification GET; AuthFailed when it is refused."""
        raise AuthFailed("missing-credentials")

    def private_query(self) -> frozenset[str]:
        """Query parameters that carry credentials: never stored."""
        return frozenset()


def constant_time_any(expected: Iterable[bytes], given: Iterable[bytes]) -> bool:
    """True when any given value equals any expected one; every pair is compared."""
    found = False
    candidates = list(given)
    for wanted in expected:
        for value in candidates:
            found |= hmac.compare_digest(wanted, value)
    return found


def check_window(value: str | None, now: float, tolerance: float, *, millis: bool = False) -> None:
    """Refuse a missing, malformed or out-of-window timestamp (both directions)."""
    if value is None or not value.strip():
        raise AuthFailed("missing-timestamp")
    try:
        stamp = int(value.strip())
    except ValueError:
        raise AuthFailed("missing-timestamp") from None
    seconds = stamp / 1000 if millis else float(stamp)
    if abs(now - seconds) > tolerance:
        raise AuthFailed("stale-timestamp")
