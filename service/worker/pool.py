"""The worker pool: one fetcher, N processing tasks, and a maintenance loop, per process.

- The fetcher reads only as many new entries as there are free tasks (XREADGROUP COUNT/BLOCK),
  so nothing waits long in memory while counting as "in progress" in Redis.
- The maintenance loop reclaims entries other consumers left idle past the visibility timeout
  (XAUTOCLAIM), keeps this consumer's own in-flight entries fresh (XCLAIM JUSTID) so they are
  not reclaimed while still being worked on, and moves due retries back into the stream.
- Stopping: no new reads; tasks finish what they hold within the grace period and are then
  cancelled; entries not finished stay pending for another consumer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from contextlib import suppress
from typing import Protocol

from redis.exceptions import RedisError

from service import tracing
from service.envelope import Envelope
from service.logs import submission_context
from service.queue import Entry, Queue
from service.worker.gate import DeliveryGate
from service.worker.pipeline import Pipeline

logger = logging.getLogger(__name__)


class Service(Protocol):
    """Something that runs beside the pool: ``start`` must finish before work begins."""

    async def start(self, stopping: asyncio.Event) -> None: ...

    async def run(self, stopping: asyncio.Event) -> None: ...


MAX_DELIVERIES = 10
"""An entry reclaimed more often than this without an outcome is dead-lettered."""

PRUNE_EVERY = 60.0
"""Seconds between prunings of the state index (members whose record expired)."""


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Worker:
    """N asyncio tasks processing the work stream through one consumer name."""

    def __init__(
        self,
        queue: Queue,
        pipeline: Pipeline,
        *,
        concurrency: int,
        visibility_timeout: float,
        block_ms: int,
        grace_period: float,
        consumer: str | None = None,
        maintenance_interval: float | None = None,
        services: Sequence[Service] = (),
        gate: DeliveryGate | None = None,
    ) -> None:
        self.queue = queue
        self.pipeline = pipeline
        self.concurrency = concurrency
        self.visibility_timeout = visibility_timeout
        self.consumer = consumer or default_consumer_name()
        self.block_ms = block_ms
        self.maintenance_interval = maintenance_interval or min(5.0, visibility_timeout / 4)
        self.grace_period = grace_period
        self.services = tuple(services)
        self.gate = gate
        self._inbox: asyncio.Queue[Entry] = asyncio.Queue()
        self._active: dict[str, Entry] = {}
        self._busy: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self.heartbeat = time.monotonic()
        """When the maintenance loop last completed a round (liveness)."""
        self.ready = asyncio.Event()
        """Set once the group exists, the services have started and processing has begun."""
        self.processed = 0

    def _free_slots(self) -> int:
        return self.concurrency - len(self._active) - self._inbox.qsize()

    async def run(self) -> None:
        """Run until ``stop()``; raises if a loop dies unexpectedly (after stopping the rest)."""
        await self._wait_for_group()
        for service in self.services:
            await service.start(self._stopping)
        processors = [
            asyncio.create_task(self._process_loop(), name=f"processor-{i}")
            for i in range(self.concurrency)
        ]
        loops = [
            asyncio.create_task(self._fetch_loop(), name="fetcher"),
            asyncio.create_task(self._maintenance_loop(), name="maintenance"),
            *(
                asyncio.create_task(s.run(self._stopping), name=type(s).__name__)
                for s in self.services
            ),
        ]
        stop_waiter = asyncio.create_task(self._stopping.wait())
        self.ready.set()
        logger.info("worker %s started: %d tasks", self.consumer, self.concurrency)
        try:
            done, _ = await asyncio.wait([*loops, stop_waiter], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop_waiter and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            self._stopping.set()
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            self._slot_free.set()
            await self._drain(processors)
            stop_waiter.cancel()
            logger.info("worker %s stopped after %d submissions", self.consumer, self.processed)

    def stop(self) -> None:
        """Ask the worker to stop; safe to call from a signal handler."""
        self._stopping.set()

    async def _drain(self, processors: list[asyncio.Task[None]]) -> None:
        # Idle tasks go at once; busy ones get the grace period to finish, then are cancelled.
        for task in processors:
            if task not in self._busy:
                task.cancel()
        _, pending = await asyncio.wait(processors, timeout=self.grace_period)
        cancelled = list(self._active)
        for task in pending:
            task.cancel()
        await asyncio.gather(*processors, return_exceptions=True)
        if pending:
            logger.warning("cancelled %d tasks still busy after the grace period", len(pending))
        # Entries read but never started (and those cancelled) stay pending: mark them idle so
        # another worker reclaims them at once instead of after the visibility timeout.
        left = [self._inbox.get_nowait().entry_id for _ in range(self._inbox.qsize())]
        left += cancelled
        try:
            await self.queue.stream.touch(self.consumer, left, int(self.visibility_timeout * 1000))
        except (RedisError, OSError) as exc:
            logger.warning("could not hand back %d entries (%s)", len(left), type(exc).__name__)
        else:
            if left:
                logger.info("handed back %d unfinished entries", len(left))

    async def _wait_for_group(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                await self.queue.stream.ensure_group()
                return
            except (RedisError, OSError) as exc:
                logger.warning(
                    "Redis unavailable (%s); retrying in %.1fs", type(exc).__name__, delay
                )
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, 10.0)

    async def _fetch_loop(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            free = self._free_slots()
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                if self.gate is not None and await self.gate.closed():
                    # Close refuses the API key: leave the backlog in the stream, untouched.
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), 1.0)
                    continue
                entries = await self.queue.stream.read(self.consumer, free, self.block_ms)
                delay = 0.5
            except (RedisError, OSError) as exc:
                logger.warning(
                    "reading the stream failed (%s); retrying in %.1fs", type(exc).__name__, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            for entry in entries:
                self._inbox.put_nowait(entry)

    async def _process_loop(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        while not self._stopping.is_set():
            entry = await self._inbox.get()
            if self._stopping.is_set():
                self._inbox.put_nowait(entry)  # not started: handed back at the end of the drain
                return
            self._busy.add(me)
            self._active[entry.entry_id] = entry
            try:
                with submission_context(entry.sub_id, entry.source):
                    await self._handle(entry)
                self.processed += 1
            except (RedisError, OSError) as exc:
                # Outcome not recorded: the entry stays pending and is reclaimed later.
                logger.warning(
                    "submission %s left pending: Redis error %s", entry.sub_id, type(exc).__name__
                )
            except Exception:
                logger.exception("submission %s left pending: unexpected error", entry.sub_id)
            finally:
                del self._active[entry.entry_id]
                self._busy.discard(me)
                self._slot_free.set()

    async def _handle(self, entry: Entry) -> None:
        if not tracing.enabled():
            await self.pipeline.handle(entry)
            return
        carrier = await self._trace_context(entry)
        stream = self.queue.keys.stream
        with tracing.attempt(carrier, entry.sub_id, entry.source, stream) as span:
            tracing.outcome(span, await self.pipeline.handle(entry))

    async def _trace_context(self, entry: Entry) -> dict[str, str]:
        """The trace context the envelope carries (one extra read, only while tracing is on);
        empty, so the attempt starts a trace of its own, when it cannot be read."""
        try:
            raw = await self.queue.records.envelope(entry.sub_id)
            return dict(Envelope.from_json(raw).trace) if raw else {}
        except (RedisError, OSError, ValueError, KeyError, TypeError):
            return {}

    async def _maintenance_loop(self) -> None:
        min_idle_ms = int(self.visibility_timeout * 1000)
        pruned_at = 0.0
        while not self._stopping.is_set():
            try:
                if time.monotonic() - pruned_at > PRUNE_EVERY:
                    await self.queue.index.prune()
                    pruned_at = time.monotonic()
                stream = self.queue.stream
                await stream.move_due()
                await stream.touch(self.consumer, list(self._active))
                free = self._free_slots()
                if free > 0:
                    for entry in await stream.autoclaim(self.consumer, min_idle_ms, free):
                        if await stream.deliveries(entry) > MAX_DELIVERIES:
                            # Every attempt ended without an outcome (a crash loop): stop here.
                            await self.pipeline.give_up(
                                entry,
                                f"handed to workers {MAX_DELIVERIES} times without an "
                                "outcome; see the worker logs",
                            )
                            continue
                        logger.info("reclaimed submission %s from an idle consumer", entry.sub_id)
                        self._inbox.put_nowait(entry)
            except (RedisError, OSError) as exc:
                logger.warning("maintenance failed (%s); will retry", type(exc).__name__)
            else:
                self.heartbeat = time.monotonic()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.maintenance_interval)
