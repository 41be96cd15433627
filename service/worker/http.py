"""The worker's small HTTP port: liveness for Kubernetes and Prometheus metrics.

``GET /healthz`` answers 200 while the worker's maintenance loop keeps completing rounds (its
heartbeat), 503 once the heartbeat is older than ``stale_after`` seconds: a stuck event loop or
a dead loop makes the pod restart instead of silently holding its pending entries.
"""

from __future__ import annotations

import time

from aiohttp import web

from service import __version__
from service.close.status import refresh_metrics
from service.metrics import CONTENT_TYPE, Metrics
from service.problems import problem
from service.providers import refresh_hydration_metrics
from service.worker.pool import Worker

WORKER = web.AppKey("worker", Worker)
METRICS = web.AppKey("metrics", Metrics)


async def healthz(request: web.Request) -> web.Response:
    worker = request.app[WORKER]
    age = time.monotonic() - worker.heartbeat
    stale_after = max(30.0, worker.maintenance_interval * 6)
    if age > stale_after:
        return problem(503, "not-ready", f"worker heartbeat is {age:.0f}s old")
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "heartbeat_age_seconds": round(age, 3),
            "consumer": worker.consumer,
        }
    )


async def metrics(request: web.Request) -> web.Response:
    worker = request.app[WORKER]
    metrics = request.app[METRICS]
    queue = worker.queue
    await refresh_metrics(metrics, queue)
    hydrating = worker.pipeline.sources.hydrating()
    await refresh_hydration_metrics(metrics, queue.redis, queue.keys, hydrating)
    # The heartbeat as wall-clock time, so an alert can compare it with Prometheus' time().
    beat = time.time() - (time.monotonic() - worker.heartbeat)
    metrics.worker_heartbeat.labels(worker.consumer).set(round(beat, 3))
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})


def create_worker_app(worker: Worker, worker_metrics: Metrics | None = None) -> web.Application:
    app = web.Application()
    app[WORKER] = worker
    app[METRICS] = worker_metrics or Metrics()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app
