"""Making the Redis client from a URL, the one place that knows connection options."""

from __future__ import annotations

from redis.asyncio import Redis


def redis_from_url(url: str) -> Redis:
    """A client with short timeouts, so the door answers 503 fast when Redis is away."""
    client: Redis = Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=10.0,
        health_check_interval=30,
    )
    return client
