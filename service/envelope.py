"""The envelope: one accepted submission as the receiver parsed it, as it travels to a worker."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from service import jsoncodec

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits → two characters


_RANDOM = bytearray()


def _random_bytes(count: int) -> bytes:
    """``count`` bytes from the OS's random source, read 4 KiB at a time (one system call
    per ~400 ids instead of one per id)."""
    if len(_RANDOM) < count:
        _RANDOM.extend(os.urandom(4096))
    chunk = bytes(_RANDOM[-count:])
    del _RANDOM[-count:]
    return chunk


# A forked child must not hand out the bytes its parent will also use.
os.register_at_fork(after_in_child=_RANDOM.clear)


_LAST_MILLISECOND = [(-1, "")]
"""The last millisecond an id was made in, and its ten characters (the pair replaced whole)."""
_FIVE_BITS = bytes.maketrans(
    bytes(range(256)), bytes(_CROCKFORD.encode()[b & 31] for b in range(256))
)
"""A byte -> the character of its low 5 bits: 16 random bytes make the 80 random bits."""


def new_submission_id(now: float | None = None) -> str:
    """A ULID-style id: 48-bit millisecond time + 80 random bits, Crockford base32, sortable.

    26 characters: the time's ten (its top 3 bits, four 10-bit pairs, its last 5 bits; kept
    for the millisecond, which concurrent requests share), then sixteen random characters (5
    random bits each: the low bits of random bytes, in one ``translate``).
    """
    millis = int((time.time() if now is None else now) * 1000)
    last, head = _LAST_MILLISECOND[0]
    if millis != last:
        pairs = "".join([_PAIRS[(millis >> shift) & 1023] for shift in (35, 25, 15, 5)])
        head = f"{_CROCKFORD[(millis >> 45) & 31]}{pairs}{_CROCKFORD[millis & 31]}"
        _LAST_MILLISECOND[0] = (millis, head)
    return "sub_" + head + _random_bytes(16).translate(_FIVE_BITS).decode()


@dataclass(frozen=True, slots=True)
class Envelope:
    """A submission as received.

    ``body`` is the parsed payload: any JSON value for JSON bodies; for form bodies a dict of
    field name to string (a repeated field becomes a list of strings). ``headers`` holds only the
    request headers worth keeping (lower-case names), never credentials. ``fetched`` is what
    hydration fetched from the provider for a thin payload (the worker sets it before mapping;
    the door never does).
    """

    id: str
    source: str
    received_at: float
    content_type: str
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    client_ip: str | None = None
    fetched: Any = None
    trace: Mapping[str, str] = field(default_factory=dict)
    """The W3C trace context (``traceparent``, ``tracestate``) of the receiver's span while
    tracing is on (``service/tracing.py``), so the worker's spans join the same trace."""

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON. Built by hand: ``dataclasses.asdict`` would deep-copy the whole
        body on the hot path."""
        data = {
            "id": self.id,
            "source": self.source,
            "received_at": self.received_at,
            "content_type": self.content_type,
            "body": self.body,
            "headers": dict(self.headers),
            "query": dict(self.query),
            "client_ip": self.client_ip,
            "trace": dict(self.trace),
        }
        if self.fetched is not None:
            data["fetched"] = self.fetched
        return jsoncodec.dumps(data)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Envelope:
        data = jsoncodec.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("envelope is not a JSON object")
        return cls(
            id=str(data["id"]),
            source=str(data["source"]),
            received_at=float(data["received_at"]),
            content_type=str(data["content_type"]),
            body=data.get("body"),
            headers=dict(data.get("headers") or {}),
            query=dict(data.get("query") or {}),
            client_ip=data.get("client_ip"),
            fetched=data.get("fetched"),
            trace={str(k): str(v) for k, v in (data.get("trace") or {}).items()},
        )
