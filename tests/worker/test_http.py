"""The worker's liveness endpoint follows its heartbeat."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service import __version__
from service.config.settings import Settings
from service.config.sources import Sources
from service.worker.http import create_worker_app
from tests.conftest import running_worker


async def test_healthz_follows_the_heartbeat(
    settings: Settings, sources: Sources, redis: Redis
) -> None:
    async with running_worker(settings, sources, redis) as worker:
        client = TestClient(TestServer(create_worker_app(worker)))
        async with client:
            response = await client.get("/healthz")
            assert response.status == 200
            body: dict[str, Any] = await response.json()
            assert body["consumer"] == worker.consumer
            assert body["version"] == __version__
            worker.heartbeat -= 3600  # as if the maintenance loop had been stuck for an hour
            stale = await client.get("/healthz")
            assert stale.status == 503
            assert stale.content_type == "application/problem+json"
