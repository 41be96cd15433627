"""Deliveries that hold several submissions, and which payloads the door refuses at once.

A Meta Lead Ads POST may carry up to 1000 ``changes``, a HubSpot POST is an array of events:
the source's ``split`` (from its preset) names the items, and each item is stored as its own
submission (its body the item, its delivery key the item's event id: ``leadgen_id``,
``eventId``). The sender gets one answer after every item is stored
(``answers.accepted_items``); if storing any item fails the answer is 503 and the sender's
retry stores only what is missing (the stored items are recognised by their keys).

A payload that can never become a lead is refused with 422 where the sender can act on it:
forms (the visitor fixes it) and webhooks whose sender treats a 4xx as an answer. Not for
providers that count anything but 2xx as a failed delivery and retry it (the preset says
``always_accept``: Meta Lead Ads, HubSpot, Calendly, Google Ads): theirs are stored and end
``rejected`` with the reason. Not for thin payloads either: the person is fetched later.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from aiohttp import web
from redis.exceptions import RedisError

from service.config.sources import SourceConfig, Sources
from service.envelope import Envelope, new_submission_id
from service.errors import MappingRejected
from service.mapping import Mapper
from service.problems import ProblemError
from service.receiver import answers
from service.receiver.delivery import delivery_id, item_key
from service.receiver.state import QUEUE

logger = logging.getLogger(__name__)


def _checkable(sources: Sources, source: SourceConfig, mapper: Mapper) -> bool:
    """Whether the door may refuse a payload of ``source`` that can never map (422)."""
    if mapper.template.fetch_id is not None:
        return False  # the person is fetched later: nothing to check yet
    if source.kind == "form":
        return True
    preset = sources.presets.presets.get(source.preset) if source.preset else None
    return not (preset is not None and preset.always_accept)


def refuses_unmappable(sources: Sources, source: SourceConfig, mapper: Mapper) -> bool:
    """Whether the door answers 422 to one whole payload of ``source`` that can never map
    (a split delivery is checked item by item in :func:`accept_items`)."""
    return not mapper.splits and _checkable(sources, source, mapper)


def unmappable(mapper: Mapper, envelope: Envelope, where: str = "") -> ProblemError | None:
    """The 422 for a payload ``map`` would reject, naming the reason and its code."""
    try:
        mapper.check(envelope)  # the worker's decision and reason, without the lead and note
    except MappingRejected as exc:
        return ProblemError(422, "unprocessable", f"{where}{exc.reason}", code=exc.code)
    return None


async def accept_items(
    request: web.Request,
    *,
    sources: Sources,
    source: SourceConfig,
    mapper: Mapper,
    envelope: Envelope,
    event_id: str | None,
) -> web.Response:
    """Store each item of a split delivery as its own submission, then answer once."""
    items = mapper.split(envelope)
    parts: list[Envelope] = []
    for index, item in enumerate(items):
        sub_id = envelope.id if index == 0 else new_submission_id(envelope.received_at)
        parts.append(dataclasses.replace(envelope, id=sub_id, body=item))
    if _checkable(sources, source, mapper):
        for index, part in enumerate(parts):
            refused = unmappable(mapper, part, f"item {index}: ")
            if refused is not None:
                raise refused
    whole = delivery_id(request.headers, event_id)
    keys = [
        item_key(source, mapper, part, delivery_id=whole, index=index)
        for index, part in enumerate(parts)
    ]
    queue = request.app[QUEUE]
    try:
        results = await asyncio.gather(
            *(queue.intake.enqueue(part, key) for part, key in zip(parts, keys, strict=True))
        )
    except (RedisError, OSError) as exc:
        name = envelope.source
        logger.error("cannot queue the items of a delivery for %s: %s", name, type(exc).__name__)
        raise ProblemError(
            503, "queue-unavailable", "the submissions were not all stored; send them again"
        ) from None
    if not items:
        logger.info("a delivery for %s held no submission (nothing to store)", envelope.source)
    return answers.accepted_items(list(results))
