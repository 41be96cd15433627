"""How the worker keeps what it reads from Close at start (the schema, the follow-ups' users,
groups and sequences): read until Close answers, backing off, then again every so often."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import TypeVar

from redis.exceptions import RedisError

from service.errors import CloseError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

READ_ERRORS = (CloseError, RedisError, OSError)
"""What a read from Close may fail with for now (the client paces itself through Redis: a Redis
outage lands here too)."""


async def read_until_answered(
    read: Callable[[], Awaitable[_T]], stopping: asyncio.Event, what: str
) -> _T | None:
    """``read()``'s answer, tried again (1 s, doubling up to a minute) while it fails with a
    :data:`READ_ERRORS`; None when stopping was asked first."""
    delay = 1.0
    while not stopping.is_set():
        try:
            return await read()
        except READ_ERRORS as exc:
            logger.warning("cannot read %s yet (%s); retrying in %.0fs", what, exc, delay)
        with suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)
        delay = min(delay * 2, 60.0)
    return None


async def every(seconds: float, stopping: asyncio.Event) -> AsyncIterator[None]:
    """A turn every ``seconds`` until stopping is asked."""
    while not stopping.is_set():
        with suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), seconds)
        if stopping.is_set():
            return
        yield
