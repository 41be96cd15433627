"""The service under test: its sources file, receiver and worker processes, the queue it
fills, and the records it leaves (which say when each submission was received and finished)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bench import payloads
from bench.procs import PYTHON, SERVER_CORE, Procs, service_env
from close_emulator import DEFAULT_API_KEY
from service.config.settings import Settings
from service.dev.redis_server import free_port
from service.envelope import Envelope, new_submission_id
from service.keys import GROUP, Keys
from service.queue import DeliveryKey, Queue
from service.queue.connection import redis_from_url
from service.queue.records import TERMINAL_STATES

SOURCES_YAML = """\
# Written by bench/: configured like production (see bench/README.md).
sources:
  partner:                      # a partner's signed JSON webhooks (Standard Webhooks)
    kind: webhook
    description: Signed JSON leads from a partner
    default_region: US
    auth:
      scheme: standard-webhooks
      secrets: [env:{secret_env}]
    extract:
      email: body.customer.contact.email
      full_name: "{full_name}"
      phone: "first(body.customer.contact.mobile, body.customer.contact.phone)"
      title: body.customer.contact.job_title
      company: body.customer.company_name
      website: body.customer.web
      message: body.request.comment
      address.city: body.customer.address.city
      address.country: body.customer.address.country
      extra.partner_ref: body.reference
  website:                      # the marketing site's contact form
    kind: form
    description: Contact form on the marketing site
    preset: generic-form
    default_region: US
    cors:
      origins: ["https://www.example.com"]
    redirect:
      success_url: https://www.example.com/thanks
    honeypot: fax
    rate_limit:                 # on, but high: the load comes from one address
      per_client: 1000000/minute
      per_source: 1000000/minute
    files: drop
"""


FULL_NAME = "join_any(' ', body.customer.contact.given_name, body.customer.contact.family_name)"


@dataclass
class Stack:
    """What every benchmark of the service shares: files, the secret, the Close key."""

    workdir: Path
    secret: str
    sources_file: Path

    @classmethod
    def create(cls, workdir: Path) -> Stack:
        sources = workdir / "sources.yaml"
        text = SOURCES_YAML.replace("{secret_env}", payloads.SECRET_ENV)
        sources.write_text(text.replace("{full_name}", FULL_NAME))
        return cls(workdir=workdir, secret=payloads.new_secret(), sources_file=sources)

    def env(self, redis_url: str, prefix: str = "intake", **settings: object) -> dict[str, str]:
        return service_env(
            redis_url=redis_url,
            key_prefix=prefix,
            sources_file=self.sources_file,
            **{payloads.SECRET_ENV: self.secret},
            **settings,
        )

    def start_receiver(
        self,
        procs: Procs,
        redis_url: str,
        *,
        name: str = "receiver",
        prefix: str = "intake",
        cores: str = SERVER_CORE,
        wrapper: list[str] | None = None,
    ) -> tuple[Any, int]:
        """``lead-intake serve`` on a free port; returns (process, port)."""
        port = free_port()
        argv = [*(wrapper or []), PYTHON, "-m", "service.cli", "serve"]
        process = procs.start(name, argv, cores=cores, env=self.env(redis_url, prefix, port=port))
        procs.wait_port(name, process, port, timeout=30)
        return process, port

    def start_worker(
        self,
        procs: Procs,
        redis_url: str,
        close_url: str,
        *,
        name: str,
        prefix: str,
        concurrency: int,
        cores: str = SERVER_CORE,
        close_rate_limit: float = 100_000,
        wrapper: list[str] | None = None,
        wait: bool = True,
    ) -> tuple[Any, int]:
        """``lead-intake worker`` against the emulator; returns (process, health port), once
        its health port is open (imports done) unless ``wait`` is false.

        ``INTAKE_READ_BLOCK_MS=100``: an idle worker polls the stream every 0.1 s instead of
        every second, so that workers waiting at the gate (:func:`hold`) all start within
        0.1 s of its release. Nothing else differs from the defaults but the rate limit."""
        port = free_port()
        env = self.env(
            redis_url,
            prefix,
            close_base_url=close_url,
            close_api_key=DEFAULT_API_KEY,
            close_rate_limit=close_rate_limit,
            worker_concurrency=concurrency,
            worker_http_port=port,
            consumer_name=name,
            read_block_ms=100,
        )
        argv = [*(wrapper or []), PYTHON, "-m", "service.cli", "worker"]
        process = procs.start(name, argv, cores=cores, env=env)
        if wait:
            procs.wait_port(name, process, port, timeout=30)
        return process, port


# -- the queue ------------------------------------------------------------------------------


async def preload(
    redis_url: str, prefix: str, tag: str, count: int, delivery: str = ""
) -> list[str]:
    """Put ``count`` partner webhooks (distinct people) into the stream with the service's own
    ``Queue.enqueue``, as the receiver would have; returns the submission ids. The people are
    those of ``tag``; ``delivery`` makes their deliveries new (the same people again)."""
    redis = redis_from_url(redis_url, Settings().redis_options)
    queue = Queue(redis, Keys(prefix), record_ttl=24 * 3600)
    ids: list[str] = []
    try:
        await queue.stream.ensure_group()

        async def one(index: int) -> str:
            now = time.time()
            msg_id = f"msg_{tag}_{index}{delivery}"
            envelope = Envelope(
                id=new_submission_id(now),
                source=payloads.WEBHOOK_SOURCE,
                received_at=now,
                content_type="application/json",
                body=json.loads(payloads.webhook_body(tag, index)),
                headers={"content-type": "application/json", "webhook-id": msg_id},
                client_ip="127.0.0.1",
            )
            digest = hashlib.sha256(f"webhook-id\x1f{msg_id}".encode()).hexdigest()[:40]
            sub_id, _ = await queue.intake.enqueue(
                envelope, DeliveryKey("webhook-id", digest, 86400)
            )
            return sub_id

        for first in range(0, count, 50):  # the client's pool allows some connections
            ids += await asyncio.gather(*(one(i) for i in range(first, min(count, first + 50))))
    finally:
        await redis.aclose()
    return ids


async def hold(redis_url: str, prefix: str) -> None:
    """Hide the stream's entries from the consumer group (its last-delivered id moved to the
    end), so workers can start and settle before the drain begins."""
    redis = redis_from_url(redis_url, Settings().redis_options)
    try:
        await redis.xgroup_setid(Keys(prefix).stream, GROUP, "$")
    finally:
        await redis.aclose()


async def release(redis_url: str, prefix: str, processes: int, timeout: float) -> float:  # noqa: ASYNC109
    """Wait until ``processes`` workers wait on the stream (blocked in XREADGROUP: started,
    Close's schema read), then show them all its entries at once; returns the release time."""
    redis = redis_from_url(redis_url, Settings().redis_options)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            clients = await redis.client_list()
            waiting = [c for c in clients if c["cmd"] == "xreadgroup" and "b" in c["flags"]]
            if len(waiting) >= processes:
                break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError(f"workers did not start reading within {timeout}s")
        await redis.xgroup_setid(Keys(prefix).stream, GROUP, "0")
        return time.time()
    finally:
        await redis.aclose()


async def queue_state(redis: Redis, prefix: str) -> dict[str, int]:
    """Stream length, entries ever added, pending entries, scheduled retries."""
    keys = Keys(prefix)
    try:
        info: dict[str, Any] = await redis.xinfo_stream(keys.stream)
    except ResponseError:  # no stream yet
        info = {"length": 0, "entries-added": 0}
    pending = 0
    if info.get("length"):
        summary = await redis.xpending(keys.stream, GROUP)
        pending = int(summary.get("pending", 0))
    return {
        "length": int(info.get("length", 0)),
        "added": int(info.get("entries-added", 0)),
        "pending": pending,
        "retry": int(await redis.zcard(keys.retry)),
    }


async def stream_added(redis_url: str, prefix: str) -> int:
    """Entries ever added to the stream under ``prefix``."""
    redis = redis_from_url(redis_url, Settings().redis_options)
    try:
        return (await queue_state(redis, prefix))["added"]
    finally:
        await redis.aclose()


async def _finished(redis: Redis, prefix: str, ids: list[str]) -> int:
    keys = Keys(prefix)
    done = 0
    for start in range(0, len(ids), 2000):
        pipe = redis.pipeline(transaction=False)
        for sub_id in ids[start : start + 2000]:
            pipe.hget(keys.sub(sub_id), "state")
        done += sum(1 for state in await pipe.execute() if state in TERMINAL_STATES)
    return done


async def wait_drained(
    redis_url: str,
    prefix: str,
    expected: int,
    timeout: float,  # noqa: ASYNC109 - a deadline for the polling loop, not a call timeout
    ids: list[str] | None = None,
) -> bool:
    """Wait until ``expected`` entries were added and none is left (stream empty, nothing
    pending or scheduled for a retry) and, given ``ids``, every one of them is in a final
    state; False when ``timeout`` passed first."""
    redis = redis_from_url(redis_url, Settings().redis_options)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            state = await queue_state(redis, prefix)
            empty = state["length"] == 0 and state["retry"] == 0 and state["pending"] == 0
            if (
                state["added"] >= expected
                and empty
                and (ids is None or await _finished(redis, prefix, ids) == len(ids))
            ):
                return True
            await asyncio.sleep(0.05)
        return False
    finally:
        await redis.aclose()


async def final_states(redis_url: str, prefix: str) -> Counter[str]:
    """The state of every submission record under ``prefix`` (SCAN: for the end of a run)."""
    redis = redis_from_url(redis_url, Settings().redis_options)
    keys = Keys(prefix)
    states: Counter[str] = Counter()
    try:
        batch: list[str] = []
        async for key in redis.scan_iter(match=keys.sub("*"), count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                states.update(await _states(redis, batch))
                batch = []
        states.update(await _states(redis, batch))
    finally:
        await redis.aclose()
    return states


async def _states(redis: Redis, keys: list[str]) -> list[str]:
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.hget(key, "state")
    return [state or "missing" for state in await pipe.execute()]


# -- the records ----------------------------------------------------------------------------


@dataclass
class Outcomes:
    """What the records say about a set of submissions."""

    states: Counter[str]
    last_finished: float
    """The latest ``updated_at`` of the records (0 when none exists)."""
    end_to_end: list[float]
    """Seconds from receipt to the final state, for every ``created`` submission."""
    finished: list[float]
    """When each submission reached its state (its ``updated_at``), in no order."""


async def outcomes(redis_url: str, prefix: str, ids: list[str]) -> Outcomes:
    redis = redis_from_url(redis_url, Settings().redis_options)
    keys = Keys(prefix)
    states: Counter[str] = Counter()
    last = 0.0
    e2e: list[float] = []
    finished: list[float] = []
    try:
        for start in range(0, len(ids), 1000):
            pipe = redis.pipeline(transaction=False)
            for sub_id in ids[start : start + 1000]:
                pipe.hmget(keys.sub(sub_id), "state", "received_at", "updated_at")
            for state, received, updated in await pipe.execute():
                states[state or "missing"] += 1
                if state is None:
                    continue
                last = max(last, float(updated))
                finished.append(float(updated))
                if state == "created":
                    e2e.append(float(updated) - float(received))
    finally:
        await redis.aclose()
    return Outcomes(states, last, e2e, finished)


# -- the emulator ---------------------------------------------------------------------------


async def emulator_call(port: int, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"http://127.0.0.1:{port}/_emulator/{path}", json=body) as r,
    ):
        r.raise_for_status()
        return await r.json()


async def emulator_prepare(port: int, *, reset: bool = True, **options: Any) -> int:
    """Forget the emulator's objects, log and buckets (unless not ``reset``), apply
    ``options``; the next request index (to read this run's requests later)."""
    if reset:
        await emulator_call(port, "POST", "reset")
    if options:
        await emulator_call(port, "POST", "config", options)
    answer = await emulator_call(port, "GET", "requests?since=1000000000000")
    return int(answer["next"])


async def emulator_preload(port: int, count: int, tag: str) -> dict[str, Any]:
    """Store ``count`` leads of distinct people in the emulator (bench/emulator.py)."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session,
        session.post(
            f"http://127.0.0.1:{port}/_bench/preload", json={"count": count, "tag": tag}
        ) as r,
    ):
        r.raise_for_status()
        answer: dict[str, Any] = await r.json()
        return answer


async def emulator_requests(port: int, since: int) -> list[dict[str, Any]]:
    answer = await emulator_call(port, "GET", f"requests?since={since}")
    return list(answer["data"])


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[rank]
