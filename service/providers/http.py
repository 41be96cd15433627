"""One GET to a provider's API, with its own retries: a GET changes nothing, so a timeout, a
lost connection or a 5xx is tried again at once (with jittered backoff), within the attempt.
A rate-limit answer is not waited out here: it is handed back, and the caller pauses the
source's fetches for every worker (``pauses.py``) instead of holding a worker task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from service import __version__, jsoncodec
from service.backoff import retry_delay
from service.errors import FetchUnavailable
from service.metrics import Metrics

RETRY_BASE = 0.2
RETRY_CAP = 2.0


@dataclass(frozen=True, slots=True)
class Answer:
    """What the provider answered: status, headers, and the body (parsed JSON, else text)."""

    status: int
    headers: Mapping[str, str]
    body: Any


class ProviderHTTP:
    """The shared session for every provider, with timeouts and in-request retries."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        timeout: float,
        attempts: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.session = session
        self.attempts = attempts
        self.metrics = metrics
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def get(
        self,
        provider: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        """GET ``url``; the final answer (any status), or FetchUnavailable when the provider
        could not be reached or kept failing (5xx) through every try."""
        sent = {"Accept": "application/json", "User-Agent": f"lead-intake/{__version__}"}
        sent.update(headers or {})
        for attempt in range(1, self.attempts + 1):
            started = time.monotonic()
            try:
                async with self.session.get(
                    url, headers=sent, params=params, timeout=self._timeout
                ) as response:
                    raw = await response.read()
                    status, answer_headers = response.status, response.headers
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._count(provider, "error", started)
                if attempt < self.attempts:
                    await asyncio.sleep(retry_delay(attempt, base=RETRY_BASE, cap=RETRY_CAP))
                    continue
                raise FetchUnavailable(
                    f"{provider}: {type(exc).__name__} after {attempt} tries", provider=provider
                ) from None
            self._count(provider, str(status), started)
            if status >= 500 and attempt < self.attempts:
                await asyncio.sleep(retry_delay(attempt, base=RETRY_BASE, cap=RETRY_CAP))
                continue
            return Answer(status, answer_headers, _parsed(raw))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _count(self, provider: str, status: str, started: float) -> None:
        if self.metrics is not None:
            self.metrics.provider_requests.labels(provider, status).inc()
            self.metrics.provider_seconds.labels(provider).observe(time.monotonic() - started)


def _parsed(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return jsoncodec.loads(raw)
    except ValueError:
        return raw[:500].decode("utf-8", "replace")
