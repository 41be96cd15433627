"""Group commit for the door: the enqueue scripts of concurrent requests share round trips.

Each request still waits for its own script's answer before it answers the sender, so "a 2xx
only after Redis stored it" holds. The scripts go to Redis pipelined on one connection: a
request's script is written with the others of the same turn of the event loop, or sooner,
with the ``chunk`` before it, once that many are waiting; one reader takes the replies in the
order they were written. So Redis runs the first scripts of a burst while the receiver is still
parsing the rest, instead of the receiver waiting for a whole batch and Redis for the next one
(the receiver's core idled a fifth of the time that way), and one socket write and one read
still serve many requests under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any, Generic

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import BusyLoadingError, InvalidResponse, NoScriptError, RedisError
from redis.exceptions import ConnectionError as ConnectionLost

from service.queue.connection import RedisClient
from service.queue.lua import ArgsT, BoundScript, KeysT

logger = logging.getLogger(__name__)

CHUNK = 8
"""Scripts written at once when that many are waiting, before the loop's turn ends."""


class NotReplicated(RedisError):
    """The batch's writes did not reach the replicas asked for in time: not acknowledged."""


_Call = tuple[bytes, "asyncio.Future[Any]", int]
"""One caller's script: the packed command, its future, and which sending of it this is (1:
the first). A tuple, not an object: one is made per request."""


class ScriptBatcher(Generic[KeysT, ArgsT]):
    """Runs one Lua script for many concurrent callers, pipelined ``EVALSHA`` on one
    connection (on a cluster, concurrent calls: its client routes each to its node)."""

    def __init__(
        self, redis: RedisClient, script: BoundScript[KeysT, ArgsT], *, chunk: int = CHUNK
    ) -> None:
        self.redis = redis
        self.bound = script
        self.script = script.runner
        self.chunk = chunk
        self._pipelined = isinstance(redis, Redis)
        """One server (or Sentinel's master): pipelined on a connection of our own."""
        self.writes = 0
        """Socket writes made so far (each one or more scripts): what group commit saves."""
        self._waiting: list[_Call] = []
        """Not yet written."""
        self._turn_end: asyncio.Handle | None = None
        self._sent: deque[list[_Call]] = deque()
        """Written, in order, their replies not read yet."""
        self._reader: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._retrying: set[asyncio.Task[None]] = set()
        self._connection: AbstractConnection | None = None
        self._parser: hiredis.Reader | None = None
        """The connection's reply parser, made at each connect (``_read`` feeds it)."""
        self._usable = False
        """The connection is open and in step: everything written on it is read in order."""
        self.replicas = 0
        """When above 0, each write ends with ``WAIT replicas timeout``; the scripts of a write
        fewer replicas acknowledged in time fail together (:class:`NotReplicated`)."""
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
        if not self._pipelined:
            key_list, arg_list = self.bound.script.pack(keys, args, more_keys, more_args)
            return asyncio.ensure_future(self._call(key_list, arg_list))
        command = self.bound.script.command(self.script.sha, keys, args, more_keys, more_args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        waiting = self._waiting
        waiting.append((_pack(command), future, 1))
        if len(waiting) >= self.chunk:
            self._write()
        elif self._turn_end is None:
            self._turn_end = loop.call_soon(self._write)
        return future

    def _write(self) -> None:
        """Write every waiting script (and the ``WAIT``) on the connection, or connect first."""
        if self._turn_end is not None:
            self._turn_end.cancel()
            self._turn_end = None
        if not self._waiting:
            return
        connection = self._connection
        if not self._usable or connection is None or _dead(connection):
            self._usable = False
            if self._connecting is None:
                self._connecting = asyncio.create_task(self._connect())
            return
        calls, self._waiting = self._waiting, []
        commands = [call[0] for call in calls]
        if self.replicas:
            # WAIT counts the replicas that have every write this connection made so far: at
            # this point in the stream, that includes these scripts' writes.
            commands.append(_pack(("WAIT", self.replicas, self.replica_timeout_ms)))
        connection._writer.writelines(commands)  # type: ignore[union-attr]
        self.writes += 1
        self._sent.append(calls)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(connection))

    async def _connect(self) -> None:
        """Open (or reopen) the connection, then write what waits. A connection that died
        while idle (Redis restarted, the master moved) is found here, before anything is
        written on it: nothing of it was sent, so nothing is lost or doubled. The connection
        stays out of the pool for good; the client's ``aclose`` closes it with the rest."""
        try:
            if self._reader is not None:  # a broken connection's reader still closing it
                await asyncio.wait([self._reader])
            if self._connection is None:
                self._connection = await self.redis.connection_pool.get_connection()  # type: ignore[union-attr]
            connection = self._connection
            if connection.is_connected and _dead(connection):
                await connection.disconnect()
            if not connection.is_connected:
                await connection.connect()  # a new socket (with the client's retry)
            self._parser = _reply_parser(connection)
        except BaseException as exc:  # nobody waiting may wait forever
            calls, self._waiting = self._waiting, []
            _fail(calls, exc)
            if not isinstance(exc, (RedisError, OSError)):
                raise  # cancelled or a bug
            return
        finally:
            self._connecting = None
        self._usable = True
        self._write()

    async def _read(self, connection: AbstractConnection) -> None:
        """Read the replies of every write, in order; a broken connection fails every script
        written on it (what Redis ran of them cannot be known) and is closed."""
        # One time limit for a write's replies, not one per socket read.
        limit = (connection.socket_timeout or 0) + self.replica_timeout_ms / 1000
        try:
            stream, parser = connection._reader, self._parser
            if stream is None or parser is None:
                raise ConnectionLost("the connection closed before its replies were read")
            while self._sent:
                calls = self._sent[0]
                async with asyncio.timeout(limit or None):
                    results = await _replies(stream, parser, len(calls) + bool(self.replicas))
                acked = int(results.pop()) if self.replicas else 0
                self._sent.popleft()
                self._settle(calls, results, acked)
        except BaseException as exc:
            self._usable = False
            broken = [call for calls in self._sent for call in calls]
            self._sent.clear()
            _fail(broken, exc)
            await connection.disconnect()
            if not isinstance(exc, (RedisError, OSError)):
                raise  # cancelled or a bug
        finally:
            self._reader = None

    def _settle(self, calls: list[_Call], results: list[Any], acked: int) -> None:
        again: list[_Call] = []
        for call, result in zip(calls, results, strict=True):
            command, future, sent = call
            if isinstance(result, _NOT_RUN) and sent <= len(_AGAIN_AFTER):
                again.append((command, future, sent + 1))
            elif future.done():
                continue
            elif isinstance(result, Exception):
                future.set_exception(result)
            elif self.replicas and acked < self.replicas:
                # Stored on the master, not known to survive its loss: not acknowledged (the
                # sender sends again, and a repeat is recognised as the same delivery).
                future.set_exception(
                    NotReplicated(
                        f"the write reached {acked} of {self.replicas} replicas within "
                        f"{self.replica_timeout_ms} ms"
                    )
                )
            else:
                future.set_result(result)
        if again:
            # ``again`` holds each call's next sending (2 or more): the pause before the nth
            # sending is _AGAIN_AFTER[n - 2].
            pause = _AGAIN_AFTER[max(sent for _, _, sent in again) - 2]
            busy = any(isinstance(r, BusyLoadingError) for r in results)
            task = asyncio.create_task(self._again(again, pause if busy else 0.0))
            self._retrying.add(task)
            task.add_done_callback(self._retrying.discard)

    async def _again(self, calls: list[_Call], pause: float) -> None:
        """Redis lost its script cache (a restart, a failover), or is still loading its data:
        it ran none of ``calls``. Load the script, then send them again the same way (on a
        single server, on this connection, so a ``WAIT`` covers them too)."""
        if pause:
            await asyncio.sleep(pause)
        try:
            self.script.sha = await self.redis.script_load(self.script.script)
        except BusyLoadingError:
            pass  # sent again all the same: the reply says whether it is still loading
        except BaseException as exc:
            _fail(calls, exc)
            if not isinstance(exc, (RedisError, OSError)):
                raise
            return
        self._waiting[:0] = calls
        self._write()

    async def _call(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """One script on a cluster, loaded again where the node lost it."""
        for pause in _AGAIN_AFTER:
            try:
                return await self.redis.evalsha(self.script.sha, len(keys), *keys, *args)
            except _NOT_RUN as exc:
                if isinstance(exc, BusyLoadingError):
                    await asyncio.sleep(pause)
                with contextlib.suppress(BusyLoadingError):
                    self.script.sha = await self.redis.script_load(self.script.script)
        return await self.redis.evalsha(self.script.sha, len(keys), *keys, *args)


def _reply_parser(connection: AbstractConnection) -> hiredis.Reader:
    """A parser of the connection's replies, as redis-py's own would parse them (its error
    classes, its decoding), for ``_replies`` to read many replies per socket read with: redis-py
    reads one reply per call, through three coroutines, each time."""
    encoder = connection.encoder
    options: dict[str, Any] = {}
    if encoder.decode_responses:
        options = {"encoding": encoder.encoding, "errors": encoder.encoding_errors}
    return hiredis.Reader(
        protocolError=InvalidResponse,
        replyError=connection._parser.parse_error,
        notEnoughData=_MORE,
        **options,
    )


async def _replies(stream: asyncio.StreamReader, parser: hiredis.Reader, count: int) -> list[Any]:
    """The next ``count`` replies. An error reply is that command's result (the next one is
    intact), but one that says the connection is unusable (redis-py's ``ConnectionError``
    replies, but for LOADING, which says the script did not run) breaks it, as in redis-py."""
    replies: list[Any] = []
    while True:
        reply = parser.gets()
        while reply is _MORE:
            data = await stream.read(READ_SIZE)
            if not data:
                raise ConnectionLost("Redis closed the connection")
            parser.feed(data)
            reply = parser.gets()
        if isinstance(reply, ConnectionLost) and not isinstance(reply, BusyLoadingError):
            raise reply
        replies.append(reply)
        if len(replies) == count:
            return replies


_MORE = object()
"""What the reply parser gives while the next reply has not arrived whole."""
READ_SIZE = 65536


def _dead(connection: AbstractConnection) -> bool:
    """Whether the server closed this connection (seen by the event loop already)."""
    reader, writer = connection._reader, connection._writer
    if reader is None or writer is None:
        return True
    return reader.at_eof() or reader.exception() is not None or writer.is_closing()


def _fail(calls: list[_Call], exc: BaseException) -> None:
    for _, future, _ in calls:
        if not future.done():
            future.set_exception(exc)


_NOT_RUN = (NoScriptError, BusyLoadingError)
"""Error replies that say the script did not run: safe to run it again."""
_AGAIN_AFTER = (0.1, 0.2, 0.4, 0.8)
"""Waits before running again scripts Redis did not run because it was loading its data."""


def _pack(command: tuple[Any, ...]) -> bytes:
    """One command in the Redis protocol (hiredis packs in C)."""
    return hiredis.pack_command(command)  # type: ignore[no-any-return]
