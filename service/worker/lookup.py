"""Finding a person's lead, and reading what Close says about it.

The lookup order that makes one lead per person: the lead cache (read with the person's locks;
it knows every lead this service created or matched, whatever Close's search index lags), then
Close's search by email, then by phone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.close.client import CloseClient
from service.errors import CloseRefused, field_errors
from service.mapping import Identity


@dataclass(frozen=True, slots=True)
class Match:
    """The person's existing lead: its id, how it was found, every candidate found."""

    lead_id: str
    via: str
    candidates: tuple[str, ...] = field(default_factory=tuple)


_CHOOSERS = {
    "recently_updated": (lambda row: str(row.get("date_updated") or ""), True),
    "recently_created": (lambda row: str(row.get("date_created") or ""), True),
    "oldest": (lambda row: str(row.get("date_created") or ""), False),
}


def choose_lead(rows: Sequence[Mapping[str, Any]], how: str) -> str:
    """The lead to use among several found for one person (the source's ``dedup.choose``)."""
    key, newest_first = _CHOOSERS[how]
    ordered = sorted(rows, key=key, reverse=newest_first)
    return str(ordered[0]["id"])


async def find_lead(
    close: CloseClient, cached_lead: str | None, identity: Identity, choose: str
) -> Match | None:
    """The person's lead: the cached one, else Close's search by email, then by phone. The
    caller caches a lead found by search."""
    if cached_lead:
        return Match(cached_lead, "cache", (cached_lead,))
    for kind, value in (("email", identity.email), ("phone", identity.phone)):
        if not value:
            continue
        rows = await close.find_leads(kind, value)
        if rows:
            lead_id = choose_lead(rows, choose)
            return Match(lead_id, f"search:{kind}", tuple(str(r["id"]) for r in rows))
    return None


def about_missing_lead(exc: CloseRefused) -> bool:
    """Close refused because the lead we named does not exist (any more)."""
    if exc.response is None:
        return False
    if exc.response.status == 404:
        return True
    return any(line.startswith("lead") for line in field_errors(exc.response.body))


def has_person(lead: Mapping[str, Any], identity: Identity) -> bool:
    """Whether a contact of ``lead`` is this person: by email when the submission has one (a
    shared office phone does not make two people one), else by phone."""
    email, phone = identity.email, identity.phone
    for contact in lead.get("contacts") or []:
        if email:
            if email in {str(e.get("email", "")).lower() for e in contact.get("emails") or []}:
                return True
        elif phone and phone in {str(p.get("phone", "")) for p in contact.get("phones") or []}:
            return True
    return False
