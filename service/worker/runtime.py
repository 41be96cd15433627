"""Wiring a worker process: RedisClient, the Close session, the mappers, the pool."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import aiohttp

from service.close.client import CloseClient
from service.close.fieldnames import FieldNames
from service.close.pacing import Pacer
from service.config.settings import Settings
from service.config.sources import Sources
from service.errors import ConfigError, ConfigIssue
from service.metrics import Metrics
from service.providers import ProviderClients, ProviderHTTP, ProviderPauses
from service.queue import Queue
from service.queue.connection import RedisClient, redis_from_url
from service.worker.followups import FollowupPlans, Followups
from service.worker.gate import DeliveryGate
from service.worker.hydrate import Hydrator
from service.worker.identity import IdentityLocks, LeadCache
from service.worker.mappers import MapperSet
from service.worker.outcomes import Outcomes, RetryPolicy
from service.worker.owner import Owners
from service.worker.pipeline import Pipeline
from service.worker.pool import Worker

logger = logging.getLogger(__name__)


def hydrator(
    settings: Settings,
    *,
    sources: Sources,
    mappers: MapperSet,
    queue: Queue,
    session: aiohttp.ClientSession,
    retry: RetryPolicy,
    gate: DeliveryGate,
    metrics: Metrics | None,
) -> Hydrator | None:
    """The hydrate step, when a source fetches people from a provider (else None)."""
    if not any(source.hydrate is not None for _, source in sources.items()):
        return None
    http = ProviderHTTP(
        session,
        timeout=settings.hydration_timeout_seconds,
        attempts=settings.hydration_inrequest_attempts,
        metrics=metrics,
    )
    clients = ProviderClients(
        http,
        meta_url=settings.meta_graph_url,
        hubspot_url=settings.hubspot_api_url,
        calendly_url=settings.calendly_api_url,
    )
    return Hydrator(
        queue,
        sources=sources,
        mappers=mappers,
        clients=clients,
        pauses=ProviderPauses(queue.redis, queue.keys),
        outcomes=Outcomes(queue, retry, gate=gate, metrics=metrics),
        not_found_retries=settings.hydration_not_found_retries,
        probe_seconds=settings.hydration_probe_seconds,
        fallback_token=settings.provider_emulator_token,
    )


@asynccontextmanager
async def open_worker(
    settings: Settings,
    sources: Sources,
    *,
    redis: RedisClient | None = None,
    consumer: str | None = None,
    maintenance_interval: float | None = None,
    metrics: Metrics | None = None,
) -> AsyncIterator[Worker]:
    """A ready Worker whose resources are released on exit. Call ``worker.run()`` inside."""
    if settings.close_api_key is None:
        raise ConfigError(
            [ConfigIssue("INTAKE_CLOSE_API_KEY", "not set: the worker cannot reach Close")]
        )
    async with AsyncExitStack() as stack:
        if redis is None:
            if not settings.redis_url:
                raise RuntimeError("INTAKE_REDIS_URL is not set")
            redis = redis_from_url(settings.redis_url, settings.redis_options)
            stack.push_async_callback(redis.aclose)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=settings.worker_concurrency * 2)
        )
        stack.push_async_callback(session.close)
        queue = Queue.from_settings(redis, settings)
        if metrics is not None:
            queue.marker.on_loss = lambda _loss: metrics.redis_data_losses.inc()
        keys = queue.keys
        pacer = Pacer(
            redis,
            keys,
            rate=settings.close_rate_limit,
            group_rates=settings.close_group_rate_limits,
        )
        close = CloseClient(
            session,
            base_url=settings.close_base_url,
            api_key=settings.close_api_key,
            timeout=settings.close_timeout_seconds,
            connect_timeout=settings.close_connect_timeout_seconds,
            attempts=settings.close_inrequest_attempts,
            pacer=pacer,
            metrics=metrics,
        )
        names = FieldNames(redis, keys, ttl=settings.record_ttl_seconds)
        mappers = MapperSet(
            sources, close, refresh_seconds=settings.schema_refresh_seconds, names=names
        )
        gate = DeliveryGate(pacer, close, probe_seconds=settings.auth_probe_seconds)
        plans = FollowupPlans(
            sources, close, mappers, refresh_seconds=settings.schema_refresh_seconds, names=names
        )
        followups = Followups(
            plans,
            Owners(
                redis,
                keys,
                pointer_ttl=settings.owner_turns_ttl_seconds,
                memo_ttl=settings.record_ttl_seconds,
                metrics=metrics,
            ),
            queue,
            clock_skew=settings.close_clock_skew_seconds,
            metrics=metrics,
        )
        retry = RetryPolicy(
            base=settings.retry_base_seconds,
            cap=settings.retry_max_seconds,
            max_attempts=settings.retry_max_attempts,
            deadline=settings.retry_deadline_seconds,
        )
        pipeline = Pipeline(
            queue,
            close,
            mappers,
            sources,
            retry,
            locks=IdentityLocks(
                redis,
                keys,
                ttl=settings.identity_lock_seconds,
                wait=settings.identity_lock_wait_seconds,
            ),
            cache=LeadCache(redis, keys, ttl=settings.lead_cache_ttl_seconds),
            gate=gate,
            unknown_outcome_grace=settings.unknown_outcome_grace_seconds,
            event_log_lag=settings.event_log_lag_seconds,
            clock_skew=settings.close_clock_skew_seconds,
            metrics=metrics,
            followups=followups if plans.configured else None,
            hydrate=hydrator(
                settings,
                sources=sources,
                mappers=mappers,
                queue=queue,
                session=session,
                retry=retry,
                gate=gate,
                metrics=metrics,
            ),
        )
        yield Worker(
            queue,
            pipeline,
            concurrency=settings.worker_concurrency,
            visibility_timeout=settings.visibility_timeout_seconds,
            consumer=consumer or settings.consumer_name,
            block_ms=settings.read_block_ms,
            maintenance_interval=maintenance_interval,
            grace_period=settings.shutdown_grace_seconds,
            services=[mappers, plans, gate],
            gate=gate,
        )
