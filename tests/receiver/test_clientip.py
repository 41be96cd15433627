"""The client address: X-Forwarded-For is believed only from trusted proxies, right to left."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from redis.asyncio import Redis

from service.clientip import client_ip
from service.config.settings import Settings
from service.queue import Queue
from tests.receiver.signers import receiver

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "xff", "client"),
    [
        ("203.0.113.5", ["1.2.3.4"], "203.0.113.5"),  # not a proxy: its header is ignored
        ("10.0.0.2", ["1.2.3.4"], "1.2.3.4"),
        ("10.0.0.2", ["6.6.6.6, 1.2.3.4, 10.1.1.1"], "1.2.3.4"),  # the left part is the client's
        ("10.0.0.2", ["6.6.6.6", "1.2.3.4"], "1.2.3.4"),  # several headers read as one list
        ("10.0.0.2", ["10.3.3.3, 10.1.1.1"], "10.3.3.3"),  # all trusted: the farthest hop
        ("10.0.0.2", [], "10.0.0.2"),
        ("10.0.0.2", ["not-an-ip, 10.1.1.1"], "10.1.1.1"),  # garbage stops the walk
        ("10.0.0.2", ["[2001:db8::7]:443"], "2001:db8::7"),
        ("10.0.0.2", ["198.51.100.1:51234"], "198.51.100.1"),
        ("fd00::1", ["2001:db8::9"], "2001:db8::9"),
        ("::ffff:10.0.0.2", ["1.2.3.4"], "1.2.3.4"),  # IPv4-mapped peer of a dual-stack socket
    ],
)
def test_client_ip(peer: str, xff: list[str], client: str) -> None:
    assert client_ip(peer, xff, PROXIES) == client


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_ip("10.0.0.2", ["1.2.3.4"], ()) == "10.0.0.2"


async def test_the_record_keeps_the_client_address(
    make_settings: Any, redis: Redis, queue: Queue
) -> None:
    sources = {"site": {"kind": "form", "preset": "generic-form"}}
    forwarded = {"X-Forwarded-For": "198.51.100.23"}
    ips = []
    for trusted in ("", "127.0.0.0/8"):
        settings: Settings = make_settings(trusted_proxies=trusted)
        async with receiver(settings, redis, sources) as client:
            response = await client.post(
                "/hooks/site", json={"email": f"{len(ips)}@example.com"}, headers=forwarded
            )
            record = await queue.records.get((await response.json())["id"])
            assert record is not None
            ips.append(json.loads(record.envelope or "")["client_ip"])
    assert ips == ["127.0.0.1", "198.51.100.23"]
