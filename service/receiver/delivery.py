"""Which delivery a request is: the key that makes a repeated delivery answer with the first id.

In order: the ``Idempotency-Key`` header, the Standard Webhooks ``webhook-id`` header, the event
id the source's verified signature scheme carries (``svix-id``, ``X-GitHub-Delivery``, a Stripe
event's ``id``...), the event id the source's preset (or ``event_id`` expression) reads from the
payload; otherwise, when the source allows it, a hash of the normalised body within a short
window, so a double click on a form's submit button makes one submission.

One delivery that holds several submissions (a Meta POST with several leadgen changes, a
HubSpot array of events: the source's ``split``) names each item by its own event id
(:func:`item_key`): the delivery's headers name the whole POST, not its items.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from service import jsoncodec
from service.config.sources import DedupSpec, SourceConfig
from service.envelope import Envelope
from service.mapping import Mapper
from service.queue.intake import DeliveryKey

ID_HEADERS = (("Idempotency-Key", "idempotency-key"), ("webhook-id", "webhook-id"))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def normalised_body(body: Any, ignored: frozenset[str]) -> Any:
    """Strings trimmed, empty values and ignored fields dropped, keys sorted (by the dump)."""
    if isinstance(body, dict):
        out = {}
        for key, value in body.items():
            if key in ignored:
                continue
            if type(value) is str:  # a form's field: the common case, without a call
                if text := value.strip():
                    out[key] = text
                continue
            clean = normalised_body(value, ignored)
            if clean not in ("", None, [], {}):
                out[key] = clean
        return out
    if isinstance(body, list):
        return [normalised_body(item, ignored) for item in body]
    if isinstance(body, str):
        return body.strip()
    return body


def _body_hash(envelope: Envelope, dedup: DedupSpec) -> DeliveryKey | None:
    """The normalised body's hash within the source's body window (None: window off)."""
    if dedup.body_window_seconds <= 0:
        return None
    canonical = jsoncodec.dumps(
        normalised_body(envelope.body, frozenset(dedup.hash_ignored_fields)), sort_keys=True
    )
    digest = hashlib.sha256(b"body\x1f" + canonical).hexdigest()[:40]  # as _digest
    return DeliveryKey("body-hash", digest, dedup.body_window_seconds)


def delivery_key(
    source: SourceConfig,
    mapper: Mapper | None,
    headers: Mapping[str, str],
    envelope: Envelope,
    *,
    event_id: str | None = None,
) -> DeliveryKey | None:
    """``event_id``: the id the source's (verified) signature scheme carries, if any."""
    dedup = source.dedup
    for header, kind in ID_HEADERS:
        value = (headers.get(header) or "").strip()
        if value:
            return DeliveryKey(kind, _digest(kind, value), dedup.event_ttl_seconds)
    if event_id and event_id.strip():
        return DeliveryKey(
            "event-id", _digest("event-id", event_id.strip()), dedup.event_ttl_seconds
        )
    event_id = mapper.event_id(envelope) if mapper is not None else None
    if event_id:
        return DeliveryKey("event-id", _digest("event-id", event_id), dedup.event_ttl_seconds)
    return _body_hash(envelope, dedup)


def item_key(
    source: SourceConfig,
    mapper: Mapper,
    envelope: Envelope,
    *,
    delivery_id: str | None,
    index: int,
) -> DeliveryKey | None:
    """The key of one item of a split delivery: the item's event id (the preset's
    ``event_id`` over the item), else the delivery's id and the item's position, else a hash
    of the item within the body window."""
    dedup = source.dedup
    event_id = mapper.event_id(envelope)
    if event_id:
        return DeliveryKey("event-id", _digest("event-id", event_id), dedup.event_ttl_seconds)
    if delivery_id:
        digest = _digest("item", delivery_id, str(index))
        return DeliveryKey("delivery-item", digest, dedup.event_ttl_seconds)
    return _body_hash(envelope, dedup)


def delivery_id(headers: Mapping[str, str], event_id: str | None) -> str | None:
    """What names a whole delivery: Idempotency-Key, webhook-id, the scheme's event id."""
    for header, _ in ID_HEADERS:
        value = (headers.get(header) or "").strip()
        if value:
            return f"{header}:{value}"
    return event_id.strip() if event_id and event_id.strip() else None
