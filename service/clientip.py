"""The client's IP address: the peer, or what trusted proxies say in ``X-Forwarded-For``.

Each proxy appends the address it received the request from, so the list is read from the
right: trusted proxies are skipped and the first address that is not one of them is the
client. Anything left of it was written by the client itself and is never believed. A peer
that is not a trusted proxy is the client, whatever headers it sends.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # 203.0.113.7:51234
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=4096)
def _peer_text(peer: str) -> str:
    """The peer address written the one way records use (IPv4-mapped IPv6 as IPv4); the
    same few peers (load balancers, proxies) send most requests, so it is cached."""
    address = _address(peer)
    return str(address) if address is not None else peer


def _trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_ip(
    peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[Network]
) -> str | None:
    """The client address for rate limits and records.

    ``forwarded_for`` are the ``X-Forwarded-For`` header values in the order received.
    """
    if not peer:
        return peer
    if not trusted:
        return _peer_text(peer)
    address = _address(peer)
    if address is None or not _trusted(address, trusted):
        return str(address) if address is not None else peer
    hops = [item for value in forwarded_for for item in value.split(",") if item.strip()]
    for item in reversed(hops):
        hop = _address(item)
        if hop is None:
            break  # garbage from the client side of the chain: stop at the last trusted hop
        address = hop
        if not _trusted(hop, trusted):
            return str(hop)
    return str(address)
