"""Making the Redis client from a URL, the one place that knows connection options.

- ``redis://[:password@]host:port/db`` or ``rediss://...``: one server (``unix://`` too);
- ``redis+cluster://[:password@]host:port,host:port`` (or ``rediss+cluster://``): a Redis
  Cluster, discovered from any of the listed nodes. Every key Lead Intake uses shares one hash
  tag, so every script runs on one node;
- ``redis+sentinel://[:password@]host:port,host:port/<service name>[/db]`` (or
  ``rediss+sentinel://``): the master Sentinel names for the service, followed on failover.
  The password is the master's; ``?sentinel_password=`` sets the Sentinels' own.

Every client retries a command whose connection died (Redis restarted, a failover moved the
master, a load balancer dropped an idle connection) on a new connection, with exponential
backoff and full jitter, a bounded number of times (:class:`RedisOptions`): a restart costs no
request once Redis answers again, and a Redis that is really gone still gets its 503 within
about a second. A timeout is not retried (the command may still run; the caller decides).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

RedisClient: TypeAlias = Redis | RedisCluster
"""What every part of Lead Intake is handed: a single server (or Sentinel master) or a cluster."""

_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 2.0,
    "socket_timeout": 10.0,
    # Bytes that are not UTF-8 (a stream entry another program wrote, a damaged record) are
    # read with U+FFFD instead of failing the whole reply: one bad entry must not stop a worker.
    "encoding_errors": "replace",
}


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """How often a command whose connection died is sent again, and how long to wait between
    tries (exponential from ``backoff_seconds``, capped at ``backoff_max_seconds``, jittered);
    how many connections a client opens at most, and how long a command waits for a free one
    when all are busy (a burst of requests waits instead of failing)."""

    attempts: int
    """Tries after the first; 0 turns retrying off."""
    backoff_seconds: float
    backoff_max_seconds: float
    max_connections: int
    pool_wait_seconds: float

    def build(self) -> Retry:
        """redis-py's retry: only a dead connection (which includes Redis still loading its
        data after a restart), never a timeout, is tried again."""
        backoff = ExponentialWithJitterBackoff(
            cap=self.backoff_max_seconds, base=self.backoff_seconds
        )
        return Retry(backoff, self.attempts, supported_errors=(RedisConnectionError,))


class SentinelManagedRedis(Redis):
    """The master a Sentinel names; closing it also closes the connections to the Sentinels."""

    managing_sentinel: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.managing_sentinel is not None:
            for client in self.managing_sentinel.sentinels:
                await client.aclose()


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    hosts = []
    for item in netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = item.strip().rpartition(":")
        if not host:
            host, port = port, ""
        hosts.append((host.strip("[]"), int(port or default_port)))
    return hosts


def _credentials(netloc: str) -> tuple[str | None, str | None]:
    if "@" not in netloc:
        return None, None
    user, _, password = netloc.rsplit("@", 1)[0].partition(":")
    return (unquote(user) or None), (unquote(password) or None)


def redis_from_url(url: str, options: RedisOptions) -> RedisClient:
    """A client with short timeouts, so the door answers 503 fast when Redis is away, that
    retries a command on a connection that died as ``options`` say."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    username, password = _credentials(parts.netloc)
    if scheme in ("redis+cluster", "rediss+cluster"):
        nodes = [ClusterNode(host, port) for host, port in _hosts(parts.netloc, 6379)]
        return RedisCluster(
            startup_nodes=nodes,
            username=username,
            password=password,
            ssl=scheme.startswith("rediss"),
            decode_responses=True,
            retry=options.build(),
            max_connections=options.max_connections,
            **_OPTIONS,
        )
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("a Sentinel URL names the service: redis+sentinel://h:26379/mymaster")
        query = parse_qs(parts.query)
        sentinel_password = query.get("sentinel_password", [None])[0]
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            _hosts(parts.netloc, 26379),
            sentinel_kwargs={"password": sentinel_password, "retry": options.build(), **_OPTIONS},
            **_OPTIONS,
        )
        master = sentinel.master_for(
            path[0],
            redis_class=SentinelManagedRedis,
            db=int(path[1]) if len(path) > 1 else 0,
            username=username,
            password=password,
            ssl=scheme.startswith("rediss"),
            decode_responses=True,
            retry=options.build(),
            max_connections=options.max_connections,
            **_OPTIONS,
        )
        assert isinstance(master, SentinelManagedRedis)
        master.managing_sentinel = sentinel
        return master
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        health_check_interval=30,
        retry=options.build(),
        max_connections=options.max_connections,
        timeout=options.pool_wait_seconds,
        **_OPTIONS,
    )
    client = Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # aclose() closes the pool, as from_url's does
    return client


@dataclass(frozen=True, slots=True)
class Durability:
    """What Redis says of the two settings "accepted means kept" needs, on every node."""

    eviction_policies: frozenset[str]
    """The ``maxmemory-policy`` of each node other than ``noeviction``."""
    aof_enabled: bool
    """AOF is on on every node."""

    @property
    def noeviction(self) -> bool:
        return not self.eviction_policies

    def warnings(self) -> list[str]:
        found = [
            f"Redis maxmemory-policy is {policy}: it may evict accepted submissions "
            "under memory pressure; set noeviction"
            for policy in sorted(self.eviction_policies)
        ]
        if not self.aof_enabled:
            found.append("Redis AOF is off: a Redis restart may lose accepted submissions")
        return sorted(found)


async def read_durability(redis: RedisClient) -> Durability:
    """The eviction policy and AOF setting of every node (``INFO memory``, ``INFO persistence``:
    managed Redis services that refuse ``CONFIG GET`` still answer these)."""
    memory: Any = await redis.info("memory")
    persistence: Any = await redis.info("persistence")
    policies: set[str] = set()
    aof = True
    for node_memory, node_persistence in zip(
        _per_node(memory), _per_node(persistence), strict=False
    ):
        policy = node_memory.get("maxmemory_policy", "noeviction")
        if policy != "noeviction":
            policies.add(str(policy))
        aof = aof and str(node_persistence.get("aof_enabled", "1")) == "1"
    return Durability(frozenset(policies), aof)


async def durability_warnings(redis: RedisClient) -> list[str]:
    """What makes this Redis unsafe for accepted submissions: eviction, no AOF."""
    return (await read_durability(redis)).warnings()


async def without_persistence(redis: RedisClient) -> bool:
    """True when Redis keeps nothing across a restart: AOF off and no snapshot schedule
    (``save ""``), on any node. A Redis that does not let us read its ``save`` setting (a
    managed one) is believed to snapshot."""
    persistence: Any = await redis.info("persistence")
    if all(str(node.get("aof_enabled", "1")) == "1" for node in _per_node(persistence)):
        return False
    try:
        reply: Any = await redis.config_get("save")
    except ResponseError:
        return False
    values = [reply] if "save" in reply else list(reply.values()) if isinstance(reply, dict) else []
    return any(not str(node.get("save", "x")).strip() for node in values if isinstance(node, dict))


def _per_node(info: Any) -> list[dict[str, Any]]:
    """``INFO`` of a single server is one dict; a cluster client answers one per node."""
    if isinstance(info, dict) and info and all(isinstance(v, dict) for v in info.values()):
        return list(info.values())
    return [info] if isinstance(info, dict) else []
