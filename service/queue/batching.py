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
import math
from collections.abc import Sequence
from typing import Any, Generic

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import BusyLoadingError, NoScriptError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from service.queue.connection import RedisClient
from service.queue.lua import ArgsT, BoundScript, KeysT

logger = logging.getLogger(__name__)

MAX_BATCH = 256


class NotReplicated(RedisError):
    """The batch's writes did not reach the replicas asked for in time: not acknowledged."""


class ScriptBatcher(Generic[KeysT, ArgsT]):
    """Runs one Lua script for many concurrent callers in pipelined ``EVALSHA`` round trips."""

    def __init__(self, redis: RedisClient, script: BoundScript[KeysT, ArgsT]) -> None:
        self.redis = redis
        self.bound = script
        self.script = script.runner
        self._pending: list[tuple[Sequence[Any], Sequence[Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._connection: AbstractConnection | None = None
        self.replicas = 0
        """When above 0, each batch ends with ``WAIT replicas timeout``; a batch fewer replicas
        acknowledged in time fails whole (:class:`NotReplicated`)."""
        self.replica_timeout_ms = 0

    def wait_for_replicas(self, replicas: int, timeout_seconds: float) -> None:
        """Answer each caller only once its write reached ``replicas`` replicas (0: off)."""
        self.replicas = replicas
        self.replica_timeout_ms = max(1, round(timeout_seconds * 1000))

    def __call__(
        self,
        keys: KeysT,
        args: ArgsT,
        more_keys: Sequence[str | bytes] = (),
        more_args: Sequence[Any] = (),
    ) -> asyncio.Future[Any]:
        """The script's answer, to await: a future, not a coroutine (one frame less for each
        request to pass on its way in and out)."""
        key_list, arg_list = self.bound.script.pack(keys, args, more_keys, more_args)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((key_list, arg_list, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                results = await self._run(batch)
            except BaseException as exc:  # nobody of the batch may wait forever
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, (RedisError, OSError)):
                    continue  # only this batch failed; the next one connects again
                raise  # cancelled or a bug
            for (*_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _run(self, batch: list[tuple[Sequence[Any], Sequence[Any], Any]]) -> list[Any]:
        # On a cluster (no single connection) the scripts go as concurrent calls: its client
        # routes each command to its node and refuses EVALSHA in its pipelines.
        results = await self._run_once(batch)
        for pause in _AGAIN_AFTER:
            again = [i for i, r in enumerate(results) if isinstance(r, _NOT_RUN)]
            if not again:
                break
            # Redis lost its script cache (a restart, a failover), or is still loading its
            # data: neither ran the script. Load it, then run those again the same way (on a
            # single server, through this connection, so the WAIT covers them too).
            if any(isinstance(results[i], BusyLoadingError) for i in again):
                await asyncio.sleep(pause)
            try:
                self.script.sha = await self.redis.script_load(self.script.script)
            except BusyLoadingError:
                continue
            retried = await self._run_once([batch[i] for i in again])
            for index, result in zip(again, retried, strict=True):
                results[index] = result
        return results

    async def _run_once(self, batch: list[tuple[Sequence[Any], Sequence[Any], Any]]) -> list[Any]:
        if isinstance(self.redis, Redis):
            return await self._send(self.redis, batch)
        return list(await asyncio.gather(*(self._call(keys, args) for keys, args, _ in batch)))

    async def _call(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await self.redis.evalsha(self.script.sha, len(keys), *keys, *args)
        except ResponseError as exc:  # that command's result, as in a pipeline
            return exc

    async def _send(
        self, redis: Redis, batch: list[tuple[Sequence[Any], Sequence[Any], Any]]
    ) -> list[Any]:
        """The batch as one write on this batcher's own connection, then its replies in order.

        One batch is on its way at a time, so one connection serves them all; this skips
        redis-py's pipeline machinery (pool lock, command stack, per-command packing in
        Python), which was a sixth of the receiver's CPU per request. An error reply is that
        command's result; a broken connection fails the whole batch (what Redis ran of it
        cannot be known) and is closed; the next batch connects again. The client's
        ``aclose`` closes this connection with the rest of its pool.

        A connection that died while idle (Redis restarted, the master moved) is found before
        the batch is written (it reads as closed) and replaced: nothing of the batch was sent
        on it, so nothing is lost or doubled, and the requests get their answers.
        """
        if self._connection is None:
            self._connection = await redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        connection = self._connection
        if connection.is_connected and await _closed(connection):
            await connection.disconnect()
        if not connection.is_connected:
            await connection.connect()  # a new socket (with the client's retry)
        sha = self.script.sha
        commands = [_pack(("EVALSHA", sha, len(keys), *keys, *args)) for keys, args, _ in batch]
        if self.replicas:
            # WAIT counts the replicas that have every write this connection made so far:
            # after the batch, that is the batch's writes.
            commands.append(_pack(("WAIT", self.replicas, self.replica_timeout_ms)))
        results: list[Any] = []
        try:
            # One time limit for the whole batch, its write and its replies, not one per read
            # (math.inf: no per-read limit of redis-py's own). The batch is written on the
            # connection's stream itself: redis-py's send_packed_command bounds a write with
            # asyncio.wait_for, a task and a timer for every batch.
            limit = (connection.socket_timeout or 0) + self.replica_timeout_ms / 1000
            async with asyncio.timeout(limit or None):
                writer = connection._writer
                if writer is None:  # closed meanwhile
                    raise RedisConnectionError("the connection closed before the batch")
                writer.writelines(commands)
                await writer.drain()
                for _ in batch:
                    try:
                        results.append(await connection.read_response(timeout=math.inf))
                    except (ResponseError, BusyLoadingError) as exc:  # the next reply is intact
                        results.append(exc)
                if self.replicas:
                    acked = int(await connection.read_response(timeout=math.inf))
        except BaseException:
            await connection.disconnect()
            raise
        if self.replicas and acked < self.replicas:
            # Stored on the master, not known to survive its loss: not acknowledged (the
            # sender sends again, and a repeat is recognised as the same delivery).
            failure = NotReplicated(
                f"the write reached {acked} of {self.replicas} replicas within "
                f"{self.replica_timeout_ms} ms"
            )
            return [r if isinstance(r, Exception) else failure for r in results]
        return results


async def _closed(connection: AbstractConnection) -> bool:
    """Whether the server closed this idle connection. Nothing is ever left unread on it, so
    anything to read means it was closed."""
    try:
        return await connection.can_read()
    except (RedisError, OSError):
        return True


_NOT_RUN = (NoScriptError, BusyLoadingError)
_AGAIN_AFTER = (0.1, 0.2, 0.4, 0.8)
"""Waits before running again scripts Redis did not run because it was loading its data."""
"""Error replies that say the script did not run: safe to run it again."""


def _pack(command: tuple[Any, ...]) -> bytes:
    """One command in the Redis protocol (hiredis packs in C)."""
    return hiredis.pack_command(command)  # type: ignore[no-any-return]
