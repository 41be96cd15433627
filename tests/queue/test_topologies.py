"""Redis beyond one box: the whole pipeline against a real local Redis Cluster (three
redis-server processes joined by ``redis-cli --cluster create``) and through Redis Sentinel."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from service.config.settings import Settings
from service.config.sources import Sources
from service.dev.redis_server import RedisServer, free_port
from service.envelope import Envelope, new_submission_id
from service.keys import Keys
from service.queue import Queue
from service.queue.connection import RedisClient, durability_warnings, redis_from_url
from service.receiver.app import create_app
from tests.conftest import emulator_state, running_worker, wait_for_record

RETRY = Settings().redis_options

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli not installed")


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too, below Redis's 55535 limit."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 45000)
        if all(_free(p) for p in (port, port + 10000)):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[RedisServer]]:
    nodes = []
    for _ in range(3):
        node = RedisServer(
            cluster_port(),
            extra_args=["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"],
        )
        node.extra_args += ("--cluster-config-file", str(node.dir / "nodes.conf"))
        nodes.append(node)
    try:
        for node in nodes:
            node.start()
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    ["redis-cli", "-p", str(n.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=False,
                ).stdout
                for n in nodes
            ]
            if all("cluster_state:ok" in s for s in states):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the local Redis Cluster did not become ok")
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
async def cluster_client(cluster: list[RedisServer]) -> AsyncIterator[RedisClient]:
    client = redis_from_url(f"redis+cluster://127.0.0.1:{cluster[0].port}", RETRY)
    assert isinstance(client, RedisCluster)
    # As the receiver and the worker do at start (ensure_group): redis-py's cluster client
    # discovers the nodes on its first command, and concurrent first commands race in that
    # discovery and are sent twice (seen with redis-py 8.1: 65 entries for 60 XADDs).
    await client.initialize()
    yield client
    await client.aclose()


async def test_pipeline_end_to_end_on_a_cluster(
    cluster_client: RedisClient,
    make_settings: Any,
    sources: Sources,
    emulator: TestServer,
    cluster: list[RedisServer],
) -> None:
    settings: Settings = make_settings(redis_url=f"redis+cluster://127.0.0.1:{cluster[1].port}")
    queue = Queue(cluster_client, Keys(settings.key_prefix), record_ttl=3600)
    async with TestClient(
        TestServer(create_app(settings, sources, redis=cluster_client))
    ) as client:
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        first = await client.post(
            "/hooks/website", data="name=Cy+Lu&email=cy%40example.com", headers=form
        )
        again = await client.post(
            "/hooks/website", data="name=Cy+Lu&email=cy%40example.com", headers=form
        )
        assert (first.status, again.status) == (202, 200)
        sub_id = (await first.json())["id"]
        async with running_worker(settings, sources, cluster_client):
            record = await wait_for_record(queue, sub_id)
            assert record.state == "created"
            assert await queue.records.replay(sub_id) == "replayed"
            again_record = await wait_for_record(queue, sub_id, ("created",))
            assert again_record.replayed_at is not None and again_record.attempts == 1
        ready = await (await client.get("/readyz")).json()
    assert again_record.lead_id == record.lead_id
    assert len(emulator_state(emulator).leads_with_email("cy@example.com")) == 1
    assert record.lead_id and len(emulator_state(emulator).notes_for(record.lead_id)) == 1
    counts = await queue.index.counts()
    assert counts["created"] == 1 and counts["queued"] == 0
    assert ready["status"] == "ready"


def _envelope(n: int) -> Envelope:
    return Envelope(
        id=new_submission_id(),
        source="website",
        received_at=time.time(),
        content_type="application/json",
        body={"email": f"c{n}@example.com"},
    )


async def test_concurrent_enqueues_on_a_cluster_are_each_stored(
    cluster_client: RedisClient,
) -> None:
    """Concurrent requests share a batch at the door; a cluster refuses EVALSHA in pipelines,
    so a batch there goes as concurrent calls."""
    queue = Queue(cluster_client, Keys(f"batch-{random.randrange(10**9)}"), record_ttl=60)
    envelopes = [_envelope(n) for n in range(60)]
    results = await asyncio.gather(*(queue.intake.enqueue(e) for e in envelopes))
    assert results == [(e.id, True) for e in envelopes]
    assert await cluster_client.xlen(queue.keys.stream) == 60


async def test_keys_of_one_prefix_share_a_slot(cluster_client: RedisClient) -> None:
    keys = Keys("intake")
    names = [
        keys.stream,
        keys.retry,
        keys.dead,
        keys.sub("x"),
        keys.state("queued"),
        keys.idem("s", "k"),
        keys.lock("i"),
        keys.lead("i"),
        keys.close("pause:write"),
    ]
    slots = {await cluster_client.cluster_keyslot(name) for name in names}  # type: ignore[union-attr]
    assert len(slots) == 1


async def test_sentinel_url_reaches_the_master(make_settings: Any) -> None:
    master = RedisServer()
    master.start()
    sentinel_port = free_port()
    sentinel = RedisServer(
        sentinel_port,
        config=f"sentinel monitor leads 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds leads 5000\n",
        extra_args=["--sentinel"],
    )
    try:
        sentinel.start()
        client = redis_from_url(f"redis+sentinel://127.0.0.1:{sentinel_port}/leads/0", RETRY)
        try:
            queue = Queue(client, Keys("sentinel-test"), record_ttl=60)
            await queue.stream.ensure_group()
            env = Envelope(
                id=new_submission_id(),
                source="website",
                received_at=time.time(),
                content_type="application/json",
                body={"email": "s@example.com"},
            )
            assert (await queue.intake.enqueue(env))[1]
            [entry] = await queue.stream.read("c", 1, 1000)
            assert entry.sub_id == env.id
            many = [_envelope(n) for n in range(30)]  # one batch on the master's connection
            assert await asyncio.gather(*(queue.intake.enqueue(e) for e in many)) == [
                (e.id, True) for e in many
            ]
            assert len(await queue.stream.read("c", 100, 1000)) == 30
        finally:
            await client.aclose()
    finally:
        sentinel.stop()
        master.stop()


async def test_readyz_warns_when_redis_could_lose_submissions() -> None:
    with RedisServer() as plain:
        client = redis_from_url(plain.url, RETRY)
        try:
            warnings = await durability_warnings(client)
            assert any("AOF is off" in w for w in warnings)
            await client.config_set("maxmemory-policy", "allkeys-lru")
            await client.config_set("appendonly", "yes")
            await asyncio.sleep(0.2)
            warnings = await durability_warnings(client)
            assert warnings == [
                "Redis maxmemory-policy is allkeys-lru: it may evict accepted submissions "
                "under memory pressure; set noeviction"
            ]
            await client.config_set("maxmemory-policy", "noeviction")
            assert await durability_warnings(client) == []
        finally:
            await client.aclose()


def test_urls_are_understood() -> None:
    with pytest.raises(ValueError, match="names the service"):
        redis_from_url("redis+sentinel://127.0.0.1:26379", RETRY)


async def test_every_kind_of_client_retries_a_dead_connection() -> None:
    """One server, a Sentinel master and a cluster all get the settings' retry policy."""
    policy = Settings(redis_retry_attempts=5).redis_options
    single = redis_from_url("redis://127.0.0.1:1/0", policy)
    sentinel = redis_from_url("redis+sentinel://127.0.0.1:1/leads", policy)
    cluster = redis_from_url("redis+cluster://127.0.0.1:1", policy)
    try:
        for client in (single, sentinel):
            assert isinstance(client, Redis)
            retry = client.connection_pool.connection_kwargs["retry"]
            assert retry.get_retries() == 5
        assert isinstance(cluster, RedisCluster)
        assert cluster.retry is not None and cluster.retry.get_retries() == 5
    finally:
        for client in (single, sentinel, cluster):
            await client.aclose()
