"""The envelope: one accepted submission as the receiver parsed it, as it travels to a worker."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_submission_id(now: float | None = None) -> str:
    """A ULID-style id: 48-bit millisecond time + 80 random bits, Crockford base32, sortable."""
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "sub_" + "".join(reversed(chars))


@dataclass(frozen=True, slots=True)
class Envelope:
    """A submission as received.

    ``body`` is the parsed payload: any JSON value for JSON bodies; for form bodies a dict of
    field name to string (a repeated field becomes a list of strings). ``headers`` holds only the
    request headers worth keeping (lower-case names), never credentials.
    """

    id: str
    source: str
    received_at: float
    content_type: str
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    client_ip: str | None = None

    def to_json(self) -> str:
        # Built by hand: dataclasses.asdict would deep-copy the whole body on the hot path.
        data = {
            "id": self.id,
            "source": self.source,
            "received_at": self.received_at,
            "content_type": self.content_type,
            "body": self.body,
            "headers": dict(self.headers),
            "query": dict(self.query),
            "client_ip": self.client_ip,
        }
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Envelope:
        data = json.loads(raw)
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
        )
