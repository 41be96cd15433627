"""Close's event log (``GET /event/``, close-api-actions.md §8), read for one question: which
objects did this service's API user create since a moment.

The log does not depend on the search index, so it shows a lead whose create's answer was lost
while ``/data/search/`` may not yet. Only a supported filter combination is sent
(``user_id`` + ``object_type`` + ``action``, with ``date_updated`` bounds); pages follow
``cursor_next`` (``_limit`` 50, newest first) up to :data:`MAX_PAGES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from service.close.client import CloseClient

PAGE = 50
"""Close's maximum (and default) ``_limit`` for events."""
MAX_PAGES = 40
"""At most this many pages (2,000 events) per question; more raises :class:`TooManyEvents`."""


class TooManyEvents(Exception):
    """More events matched than :data:`MAX_PAGES` pages hold: the answer is incomplete."""


def iso(moment: float) -> str:
    """A ``date_updated`` bound: ISO-8601 with microseconds, UTC."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="microseconds")


async def created_since(
    close: CloseClient, user_id: str, object_type: str, since: float, until: float | None = None
) -> list[dict[str, Any]]:
    """Every ``created`` event of ``object_type`` by ``user_id`` updated at or after ``since``
    (and at or before ``until``, when given; epoch seconds), newest first. Raises CloseError
    like every call, TooManyEvents."""
    params = {
        "user_id": user_id,
        "object_type": object_type,
        "action": "created",
        "date_updated__gte": iso(since),
        "_limit": str(PAGE),
    }
    if until is not None:
        params["date_updated__lte"] = iso(until)
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        query = dict(params)
        if cursor:  # the cursor keeps the date bounds: they are not sent again
            query.pop("date_updated__gte")
            query.pop("date_updated__lte", None)
            query["_cursor"] = cursor
        answer = await close.request("GET", "event/", params=query)
        page = answer if isinstance(answer, Mapping) else {}
        events.extend(e for e in page.get("data") or [] if isinstance(e, dict) and e.get("id"))
        cursor = page.get("cursor_next") or None
        if not cursor:
            return events
    raise TooManyEvents(f"more than {MAX_PAGES * PAGE} {object_type} events since {iso(since)}")


async def merged_into(close: CloseClient, lead_id: str) -> str | None:
    """The lead ``lead_id`` was merged into, as its ``deleted`` event tells
    (``meta.merge_destination_lead_id``); None when the log shows no merge of it."""
    params = {"object_id": lead_id, "action": "deleted", "_limit": str(PAGE)}
    answer = await close.request("GET", "event/", params=params)
    page = answer if isinstance(answer, Mapping) else {}
    for event in page.get("data") or []:
        meta = event.get("meta") if isinstance(event, Mapping) else None
        kept = meta.get("merge_destination_lead_id") if isinstance(meta, Mapping) else None
        if kept:
            return str(kept)
    return None
