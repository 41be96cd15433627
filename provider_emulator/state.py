"""What the provider emulator holds: fixtures by provider, accepted and expired tokens,
scripted faults, rate limits and every request it answered.

Points the providers' documentation leaves open are options rather than guesses: the HTTP
status Meta pairs with its rate-limit codes (``meta_rate_limit_status``), the body of
HubSpot's 404 for a missing contact (``hubspot_not_found_body``), how long a new HubSpot
contact stays unreadable after its creation webhook (``unreadable_reads``), and how many
calls a window allows (``*_rate_limit``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Literal

Provider = Literal["meta", "hubspot", "calendly"]
PROVIDERS: tuple[Provider, ...] = ("meta", "hubspot", "calendly")


@dataclass(frozen=True, slots=True)
class ProviderOptions:
    """How the emulator behaves; every field can be changed while it runs."""

    tokens: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Accepted tokens per provider; none listed: any non-empty token is accepted."""
    meta_rate_limit: int | None = None
    """Graph calls allowed per window (None: unlimited); past it Meta's code 4 error."""
    meta_rate_limit_status: int = 400
    meta_usage_percent: int = 0
    """Reported in ``X-App-Usage`` (call_count, total_cputime, total_time)."""
    meta_regain_minutes: int = 0
    """``estimated_time_to_regain_access`` in ``X-Business-Use-Case-Usage``."""
    hubspot_rate_limit: int | None = None
    """CRM calls allowed per window (None: unlimited); past it a 429 (TEN_SECONDLY_ROLLING)."""
    hubspot_not_found_body: Any = None
    """HubSpot's 404 body (undocumented; None: an error body in HubSpot's usual shape)."""
    unreadable_reads: int = 0
    """A contact answers 404 to its first N reads (creation webhook before the contact)."""
    window_seconds: float = 10.0
    calendly_rate_limit: int | None = None


@dataclass(frozen=True, slots=True)
class ProviderFault:
    """A scripted answer for the next ``count`` requests to ``provider``."""

    provider: Provider
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    count: int = 1


@dataclass(slots=True)
class RequestRecord:
    provider: str
    method: str
    path: str
    query: str
    status: int = 0
    token: str = ""
    at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "at": self.at,
        }


def bundled_fixtures() -> dict[str, dict[str, Any]]:
    """The fixtures shipped with the emulator (``fixtures.json``): what ``make run`` serves."""
    text = resources.files("provider_emulator").joinpath("fixtures.json").read_text("utf-8")
    data = json.loads(text)
    return {provider: dict(data.get(provider, {})) for provider in PROVIDERS}


class ProviderState:
    """The emulator's state; tests change it directly (``app[PROVIDER_STATE]``)."""

    def __init__(self, options: ProviderOptions, fixtures: dict[str, dict[str, Any]]) -> None:
        self.options = options
        self.objects: dict[str, dict[str, Any]] = {p: dict(fixtures.get(p, {})) for p in PROVIDERS}
        self.expired: dict[str, set[str]] = {p: set() for p in PROVIDERS}
        self.faults: list[ProviderFault] = []
        self.requests: list[RequestRecord] = []
        self.reads: dict[tuple[str, str], int] = {}
        self._windows: dict[str, tuple[float, int]] = {}

    # -- fixtures and tokens ------------------------------------------------------------------

    def add(self, provider: Provider, object_id: str, body: Any) -> None:
        """Serve ``body`` for ``object_id`` (a lead id, a contact id, an invitee path)."""
        self.objects[provider][object_id] = body

    def expire_token(self, provider: Provider, token: str) -> None:
        self.expired[provider].add(token)

    def renew_token(self, provider: Provider, token: str) -> None:
        self.expired[provider].discard(token)

    def token_state(self, provider: Provider, token: str) -> Literal["ok", "expired", "invalid"]:
        if not token:
            return "invalid"
        if token in self.expired[provider]:
            return "expired"
        accepted = self.options.tokens.get(provider)
        return "ok" if not accepted or token in accepted else "invalid"

    def configure(self, **changes: Any) -> ProviderOptions:
        self.options = replace(self.options, **changes)
        return self.options

    # -- faults, limits, log -------------------------------------------------------------------

    def add_fault(self, fault: ProviderFault) -> None:
        self.faults.append(fault)

    def next_fault(self, provider: str) -> ProviderFault | None:
        for index, fault in enumerate(self.faults):
            if fault.provider == provider:
                if fault.count <= 1:
                    del self.faults[index]
                else:
                    self.faults[index] = replace(fault, count=fault.count - 1)
                return fault
        return None

    def take_call(self, provider: str, limit: int | None) -> tuple[bool, int, float]:
        """(allowed, remaining, seconds to the window's end) for one call under ``limit``."""
        now = time.monotonic()
        started, used = self._windows.get(provider, (now, 0))
        if now - started >= self.options.window_seconds:
            started, used = now, 0
        left = self.options.window_seconds - (now - started)
        if limit is not None and used >= limit:
            self._windows[provider] = (started, used)
            return False, 0, left
        self._windows[provider] = (started, used + 1)
        return True, (limit - used - 1) if limit is not None else 1000, left

    def read_count(self, provider: str, object_id: str) -> int:
        """How often ``object_id`` has been read, this read included."""
        key = (provider, object_id)
        self.reads[key] = self.reads.get(key, 0) + 1
        return self.reads[key]

    def log(self, record: RequestRecord) -> None:
        self.requests.append(record)
        del self.requests[:-1000]

    def requests_to(self, provider: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.provider == provider]
