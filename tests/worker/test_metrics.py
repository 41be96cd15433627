"""The worker's /metrics: what happened, in Prometheus text format."""

from __future__ import annotations

import math
import time
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from service import __version__
from service.close.status import refresh_metrics
from service.config.settings import Settings
from service.config.sources import Sources
from service.metrics import Metrics
from service.queue import Queue
from service.worker.http import create_worker_app
from tests.conftest import emulator_state, enqueue, running_worker, wait_for_record


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_worker_metrics_count_outcomes_close_calls_and_queue_state(
    client: TestClient[Any, Any],
    queue: Queue,
    settings: Settings,
    sources: Sources,
    redis: Redis,
    emulator: Any,
) -> None:
    emulator_state(emulator).add_fault(method="POST", path="/api/v1/lead/", status=503, count=1)
    ids = []
    for n in range(3):
        response = await client.post(
            "/hooks/partner", json={"contact": {"email": f"m{n}@example.com"}}
        )
        ids.append((await response.json())["id"])
    # Refused at the door (422) when posted; queued straight into the stream it is rejected.
    ids.append(await enqueue(queue, {"contact": {"note": "no way to reach me"}}))
    metrics = Metrics()
    async with running_worker(settings, sources, redis, metrics=metrics) as worker:
        for sub_id in ids:
            await wait_for_record(queue, sub_id, ("created", "rejected"), within=15)
        async with TestClient(TestServer(create_worker_app(worker, metrics))) as http:
            response = await http.get("/metrics")
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            values = samples(await response.text())
    assert values[("intake_submissions_total", (("source", "partner"), ("state", "created")))] == 3
    assert values[("intake_submissions_total", (("source", "partner"), ("state", "rejected")))] == 1
    # The 503 left the create's outcome unknown: one retry for it, one waiting out the index.
    assert values[("intake_retries_scheduled_total", (("source", "partner"),))] == 2
    assert values[("intake_close_requests_total", (("group", "write"), ("status", "503")))] == 1
    assert values[("intake_close_requests_total", (("group", "search"), ("status", "200")))] >= 3
    assert (
        values[
            (
                "intake_submission_end_to_end_seconds_count",
                (("source", "partner"), ("state", "created")),
            )
        ]
        == 3
    )
    assert values[("intake_stream_length", ())] == 0
    assert values[("intake_stream_pending", ())] == 0
    assert values[("intake_delivery_paused", (("reason", "auth"),))] == 0
    assert values[("intake_redis_up", ())] == 1
    # The test session's redis-server runs without AOF (and with noeviction).
    assert values[("intake_redis_aof_enabled", ())] == 0
    assert values[("intake_redis_noeviction", ())] == 1
    assert values[("intake_stream_oldest_entry_age_seconds", ())] == 0
    assert values[("intake_build_info", (("version", __version__),))] == 1
    beat = values[("intake_worker_heartbeat_timestamp_seconds", (("consumer", worker.consumer),))]
    assert abs(beat - time.time()) < 30


async def test_oldest_entry_age_and_unknown_durability(queue: Queue, redis: Redis) -> None:
    metrics = Metrics()
    before = samples(metrics.render().decode())
    # Not known before a scrape reached Redis: NaN, which no alert compares true with 0.
    assert math.isnan(before[("intake_redis_aof_enabled", ())])
    assert not any(name == "intake_worker_heartbeat_timestamp_seconds" for name, _ in before)
    # An entry added ten minutes ago (its id carries the time it was added).
    millis = int((time.time() - 600) * 1000)
    await redis.xadd(queue.keys.stream, {"sub": "sub_old", "source": "partner"}, id=f"{millis}-0")
    await refresh_metrics(metrics, queue)
    age = samples(metrics.render().decode())[("intake_stream_oldest_entry_age_seconds", ())]
    assert 600 <= age < 660


async def test_queue_gauges_without_a_consumer_group_still_see_redis_up(
    client: TestClient[Any, Any], queue: Queue, redis: Redis
) -> None:
    await client.post("/hooks/partner", json={"contact": {"email": "g@example.com"}})
    await redis.xgroup_destroy(queue.keys.stream, "workers")
    metrics = Metrics()
    await refresh_metrics(metrics, queue)
    values = samples(metrics.render().decode())
    assert values[("intake_redis_up", ())] == 1
    assert values[("intake_stream_length", ())] == 1
    assert values[("intake_stream_pending", ())] == 0
