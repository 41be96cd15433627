"""Records, identity links and queue figures as the admin API and the dashboard show them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.close.fieldnames import with_field_names
from service.close.status import read_status
from service.queue import Queue, Record
from service.times import iso


@dataclass(frozen=True, slots=True)
class Shown:
    """What showing a record needs besides the record: the lead page's URL template and
    Close's custom field names (id → name), so errors name fields as people know them."""

    lead_url: str
    field_names: Mapping[str, str] = field(default_factory=dict)

    def named(self, text: str) -> str:
        return with_field_names(text, self.field_names)


def lead_url(record: Record, template: str) -> str | None:
    """The lead in Close: the URL Close gave, else one made from the lead id and ``template``."""
    given = record.progress.lead_url
    if given and given.startswith(("https://", "http://")):
        return given
    return template.format(record.lead_id) if record.lead_id else None


def link_item(link: Mapping[str, Any], template: str) -> dict[str, Any]:
    """An identity link as the admin API lists it: its two leads with their pages in Close, and
    what the worker recorded. The identities are their keys (hashes), never an email or phone."""
    at = float(link.get("at") or 0)
    return {
        "leads": [
            {"id": str(lead), "url": template.format(lead)} for lead in link.get("leads") or []
        ],
        "status": link.get("status"),
        "policy": link.get("policy"),
        "source": link.get("source"),
        "submission": link.get("submission"),
        "via": link.get("via"),
        "identities": dict(link.get("identities") or {}),
        "reason": link.get("reason"),
        "kept": link.get("kept"),
        "merged": link.get("merged"),
        "first_seen_at": iso(at),
        "updated_at": iso(float(link.get("updated_at") or at)),
    }


def owner_of(record: Record) -> str | None:
    """The lead's owner as the follow-ups chose or kept it (a Close user id), if any."""
    mark = record.progress.steps.get("owner")
    return mark.close_id if mark is not None and mark.state == "done" else None


def public(record: Record, template: str) -> dict[str, Any]:
    """The whole record (payload and history included), with the link to the Close lead and
    the lead's owner."""
    return {**record.to_public(), "lead_url": lead_url(record, template), "owner": owner_of(record)}


def summary(record: Record, template: str, include: Sequence[str] = ()) -> dict[str, Any]:
    """A listing row: what happened, without personal data unless ``include`` asks for it."""
    next_at = record.progress.next_attempt_at
    out: dict[str, Any] = {
        "id": record.id,
        "source": record.source,
        "state": record.state,
        "received_at": iso(record.received_at),
        "updated_at": iso(record.updated_at),
        "attempts": record.attempts,
        "lead_id": record.lead_id,
        "lead_url": lead_url(record, template),
        "owner": owner_of(record),
        "last_error": record.last_error,
        "next_attempt_at": iso(next_at) if next_at is not None else None,
        "replayed_at": iso(record.replayed_at) if record.replayed_at is not None else None,
    }
    if record.state == "erased":
        out["erased_from"] = record.erased_from
    if "payload" in include:
        out["payload"] = record.payload()
    if "history" in include:
        out["history"] = list(record.history)
    return out


def _last_error(record: Record) -> Any:
    error = record.last_error
    if error is None and record.state == "rejected" and record.history:
        error = record.history[-1].get("detail")
    return error


def error_code(record: Record) -> str | None:
    """The stable reason code of the failure or rejection (``code``), when it carries one."""
    error = _last_error(record)
    code = error.get("code") if isinstance(error, Mapping) else None
    if not code and record.state == "rejected" and record.reason:
        code = record.reason  # refused at the door (``spam``)
    return str(code) if code else None


def error_reason(record: Record) -> str | None:
    """One line saying why the last attempt failed (or why the submission was rejected)."""
    error = _last_error(record)
    if isinstance(error, Mapping):
        parts = [str(error.get(k)) for k in ("reason", "error") if error.get(k)]
        if error.get("status"):
            parts.insert(0, f"HTTP {error['status']}")
        if error.get("field_errors"):
            parts.append("; ".join(str(f) for f in error["field_errors"]))
        return ": ".join(parts) or json.dumps(error, default=str)
    return str(error) if error else None


async def queue_overview(queue: Queue) -> dict[str, Any]:
    """Submissions per state, queue depth, whether delivery to Close is paused, when Redis last
    lost its data, and the identity links per status."""
    counts, status, loss, links = await asyncio.gather(
        queue.index.counts(), read_status(queue), queue.marker.last_loss(), queue.links.counts()
    )
    depth, delivery = status.depth, status.delivery
    return {
        "states": counts,
        "total": sum(n for state, n in counts.items() if state != "erased"),
        "queue": {
            "stream_length": depth.stream_length,
            "pending": depth.pending,
            "retry_scheduled": depth.retry_scheduled,
            "dead_letters": depth.dead_letters,
        },
        "delivery": {
            "status": delivery.status,
            "paused_reason": delivery.auth_pause,
            "rate_limit_pauses": delivery.rate_limit_pauses,
        },
        # When Redis was last found without its data (queue/marker.py): what was accepted
        # before and not delivered is gone; kept a week.
        "redis": {"data_lost_at": iso(loss.at) if loss else None},
        # Identity links kept per status (queue/links.py): flagged ones are possible duplicates.
        "links": links,
    }
