"""The delivery gate: closed while Close refuses the API key (401/403), for every worker.

While closed, workers stop taking new submissions (the backlog stays in the stream) and one
probe request per interval checks the key; the first success opens the gate everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress

from redis.exceptions import RedisError

from service.close.client import CloseClient
from service.close.pacing import Pacer
from service.errors import CloseAuthFailed, CloseError

logger = logging.getLogger(__name__)


class DeliveryGate:
    def __init__(self, pacer: Pacer, close: CloseClient, *, probe_seconds: float) -> None:
        self.pacer = pacer
        self.close = close
        self.probe_seconds = probe_seconds
        self._checked_at = 0.0
        self._problem: str | None = None

    async def closed(self) -> str | None:
        """Why delivery is paused (re-read from Redis at most once a second), or None."""
        now = time.monotonic()
        if now - self._checked_at >= 1.0:
            self._problem = await self.pacer.auth_problem()
            self._checked_at = now
        return self._problem

    async def close_for_auth(self, exc: CloseAuthFailed) -> None:
        status = exc.response.status if exc.response else "401/403"
        detail = f"Close refused the API key ({status}); delivery paused until it is accepted"
        logger.error("%s: check INTAKE_CLOSE_API_KEY. Nothing is dropped meanwhile.", detail)
        await self.pacer.auth_failed(detail)
        self._problem, self._checked_at = detail, time.monotonic()

    async def start(self, stopping: asyncio.Event) -> None:
        return None

    async def run(self, stopping: asyncio.Event) -> None:
        """Probe Close while the gate is closed; open it on the first success."""
        while not stopping.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.probe_seconds)
            if stopping.is_set():
                continue
            try:
                if await self.pacer.auth_problem() is None:
                    continue
                await self.close.lead_statuses()
            except CloseAuthFailed:
                logger.error("Close still refuses the API key; delivery stays paused")
                continue
            except CloseError as exc:
                logger.warning("probing Close failed (%s); delivery stays paused", exc)
                continue
            except (RedisError, OSError) as exc:
                # A Redis outage must not end the worker: the next round checks again.
                logger.warning("checking the API key pause failed (%s)", type(exc).__name__)
                continue
            try:
                await self.pacer.auth_ok()
            except (RedisError, OSError) as exc:
                logger.warning("reopening delivery failed (%s); retrying", type(exc).__name__)
                continue
            self._problem, self._checked_at = None, time.monotonic()
            logger.warning("Close accepts the API key again: delivery resumed")
