"""Group commit for the door: the enqueue scripts of concurrent requests share round trips.

Each request still waits for its own script's answer before it answers the sender, so "a 2xx
only after Redis stored it" holds. While one pipeline is on its way to Redis, the requests that
arrive meanwhile queue up and go together in the next one: under load, one round trip (and one
socket write and read in redis-py) serves many requests; with a single request in flight there
is no added wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from service.queue.connection import RedisClient

logger = logging.getLogger(__name__)

MAX_BATCH = 256


class ScriptBatcher:
    """Runs one Lua script for many concurrent callers in pipelined ``EVALSHA`` round trips."""

    def __init__(self, redis: RedisClient, script: AsyncScript) -> None:
        self.redis = redis
        self.script = script
        self._pending: list[tuple[Sequence[Any], Sequence[Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                results = await self._run(batch)
            except (RedisError, OSError) as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException as exc:  # cancelled or a bug: nobody may wait forever
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                raise
            for (*_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _run(self, batch: list[tuple[Sequence[Any], Sequence[Any], Any]]) -> list[Any]:
        if len(batch) == 1:  # nothing to share: the plain call (it also loads the script)
            keys, args, _ = batch[0]
            return [await self.script(keys=keys, args=args)]
        pipe = self.redis.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.evalsha(self.script.sha, len(keys), *keys, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        if any(isinstance(r, NoScriptError) for r in results):
            # Redis lost its script cache (a restart): load it, then run those again.
            self.script.sha = await self.redis.script_load(self.script.script)
            for index, result in enumerate(results):
                if isinstance(result, NoScriptError):
                    keys, args, _ = batch[index]
                    try:
                        results[index] = await self.script(keys=keys, args=args)
                    except RedisError as exc:
                        results[index] = exc
        return results
