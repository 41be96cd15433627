"""One Redis script per request at the door, forms included: the rate-limit tokens, delivery
idempotency, record and stream entry are decided together, and a request refused for a rate
limit, as a duplicate or for anything else costs that one script too. Counted on the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import hiredis
import pytest
from redis.asyncio import Redis

from service.config.settings import Settings
from service.keys import Keys
from service.queue import Queue
from tests.mapping import PAYLOADS
from tests.receiver.signers import FORM, JSON, hubspot_v1, problem_of, receiver

SOURCES: dict[str, Any] = {
    "site": {
        "kind": "form",
        "preset": "generic-form",
        "honeypot": "fax",
        "rate_limit": {"per_client": "5/minute", "per_source": "100/minute"},
    },
    "warm": {"kind": "form", "preset": "generic-form"},
}
LEAD = "name=Ann+Lee&email=ann%40example.com"


class Wire:
    """The commands the process writes to Redis, write by write."""

    def __init__(self) -> None:
        self.writes: list[list[str]] = []

    def take(self) -> list[list[str]]:
        writes, self.writes = self.writes, []
        return writes


@contextmanager
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Wire]:
    """Every write to a Redis connection's stream (redis-py's commands, the door's batches)."""
    wire = Wire()
    original = asyncio.StreamWriter.writelines

    def writelines(self: asyncio.StreamWriter, data: Any) -> None:
        parts = list(data)
        reader = hiredis.Reader()
        reader.feed(b"".join(bytes(part) for part in parts))
        names = []
        while (parsed := reader.gets()) is not False:
            names.append(parsed[0].decode().upper())
        wire.writes.append(names)
        original(self, parts)

    monkeypatch.setattr(asyncio.StreamWriter, "writelines", writelines)
    yield wire


async def test_every_answer_at_a_rate_limited_form_costs_one_script(
    settings: Settings, redis: Redis, keys: Keys, queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with receiver(settings, redis, SOURCES) as client:

        async def post(data: str, headers: dict[str, str] | None = None) -> Any:
            return await client.post("/hooks/site", data=data, headers=headers or FORM)

        # Scripts loaded, connections open: what follows is what each request costs.
        assert (await client.post("/hooks/warm", data=LEAD, headers=FORM)).status == 202
        assert (await post("name=W&email=w%40example.com&fax=spam")).status == 202
        assert (await post(LEAD, {"Content-Type": "text/csv"})).status == 415
        with counting(monkeypatch) as wire:
            first = await post(LEAD)
            assert first.status == 202
            first_id = (await first.json())["id"]
            assert wire.take() == [["EVALSHA"]]
            again = await post(LEAD)  # the same fields within the window: a duplicate
            assert again.status == 200 and (await again.json())["duplicate"] is True
            assert wire.take() == [["EVALSHA"]]
            refused = await post(LEAD, {"Content-Type": "text/csv"})
            await problem_of(refused, 415, "unsupported-media-type")
            assert wire.take() == [["EVALSHA"]]  # its token, taken alone
            # The 6th token of 5: the warm-ups took two.
            limited = await post("name=Bo&email=bo%40example.com")
            await problem_of(limited, 429, "rate-limited")
            assert int(limited.headers["Retry-After"]) >= 1
            assert wire.take() == [["EVALSHA"]]
            bad_and_limited = await post(LEAD, {"Content-Type": "text/csv"})
            await problem_of(bad_and_limited, 429, "rate-limited")  # limits answer first
            assert wire.take() == [["EVALSHA"]]
    assert await redis.xlen(keys.stream) == 2  # the warm-up and the first post, nothing else
    record = await queue.records.get(first_id)
    assert record is not None and record.state == "queued"


async def test_a_client_over_its_limit_leaves_the_sources_tokens_alone(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    sources = {
        "site": {
            "kind": "form",
            "preset": "generic-form",
            "rate_limit": {"per_client": "1/hour", "per_source": "2/hour"},
            "dedup": {"body_window_seconds": 0},
        }
    }
    async with receiver(settings, redis, sources) as client:
        statuses = [
            (await client.post("/hooks/site", data=LEAD, headers=FORM)).status for _ in range(3)
        ]
    assert statuses == [202, 429, 429]
    tokens = await redis.hget(keys.throttle("source:site"), "tokens")
    assert float(tokens or 0) == pytest.approx(1.0, abs=0.01)  # only the accepted one took one


async def test_a_split_delivery_takes_its_tokens_once_for_all_its_items(
    settings: Settings,
    redis: Redis,
    keys: Keys,
    queue: Queue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUBSPOT_SECRET", "hubspot-secret")
    monkeypatch.setenv("HUBSPOT_TOKEN", "pat-na1-hubspot")
    sources = {
        "hubspot": {
            "kind": "webhook",
            "preset": "hubspot",
            "auth": {"secrets": ["env:HUBSPOT_SECRET"]},
            "hydrate": {"token": "env:HUBSPOT_TOKEN"},
            "rate_limit": {"per_client": "2/hour"},
        }
    }
    body = (PAYLOADS / "hubspot-batch.json").read_bytes()  # an array of three events
    headers = {**JSON, **hubspot_v1("hubspot-secret", body)}
    async with receiver(settings, redis, sources) as client:
        first = await client.post("/hooks/hubspot", data=body, headers=headers)
        assert first.status == 202, await first.text()
        rows = (await first.json())["submissions"]
        again = await client.post("/hooks/hubspot", data=body, headers=headers)
        assert again.status == 200  # every item a duplicate; the second token
        limited = await client.post("/hooks/hubspot", data=body, headers=headers)
        await problem_of(limited, 429, "rate-limited")
    assert len(rows) == 3 and await redis.xlen(keys.stream) == 3
    for row in rows:
        record = await queue.records.get(row["id"])
        assert record is not None and record.state == "queued"
