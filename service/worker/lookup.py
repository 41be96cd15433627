"""Finding a person's lead, and reading what Close says about it.

The lookup order that makes one lead per person: the lead cache (read with the person's locks;
it knows every lead this service created or matched, whatever Close's search index lags), then
Close's search: one query for leads with a contact having the person's email or phone, whose
answer carries each lead's contacts. The priority is decided here: a lead showing the email
wins over one showing only the phone (a shared office phone does not make two people one).

A second search is sent only when the answer may hide an email match: the person has both an
email and a phone, the page came back full (``MAX_CANDIDATES`` leads, newest first) and none of
them shows the email; then the email alone is searched. A lead Close's search matched whose
contacts, as Close now returns them, show neither value (changed since the search index saw
it) is used only when no other lead was found, and counts as found by the query's first
condition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.close.client import CloseClient
from service.close.search import MAX_CANDIDATES
from service.errors import CloseRefused, field_errors
from service.mapping import Identity


@dataclass(frozen=True, slots=True)
class Match:
    """The person's existing lead: its id, how it was found, every candidate found."""

    lead_id: str
    via: str
    candidates: tuple[str, ...] = field(default_factory=tuple)
    found: Mapping[str, Any] | None = None
    """The lead as the search answered it (its contacts with their emails and phones); None
    for the cache's."""
    linked: str | None = None
    """Another lead the person's other identity led to (the phone's, when the email's lead is
    the match; or the cache's for another identity): an identity link."""


EMAIL, PHONE = "search:email", "search:phone"
"""``Match.via`` of a lead found by Close's search, by the value its contacts show."""

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
    close: CloseClient,
    cached_lead: str | None,
    identity: Identity,
    choose: str,
    cached_leads: Sequence[str] = (),
) -> Match | None:
    """The person's lead: the cached one, else what Close's search finds (see the module
    docstring for the priority). The caller caches a lead found by search. ``cached_leads``
    (one per identity) naming another lead than ``cached_lead`` is an identity link."""
    if cached_lead:
        other = next((lead for lead in cached_leads if lead and lead != cached_lead), None)
        return Match(cached_lead, "cache", (cached_lead,), linked=other)
    email, phone = identity.email, identity.phone
    if not email and not phone:
        return None
    rows = await close.find_leads(email, phone)
    match = _best(rows, identity, choose)
    if email and phone and len(rows) >= MAX_CANDIDATES and (match is None or match.via != EMAIL):
        # A full page of phone matches may have pushed the email's own leads off it.
        by_email = _best(await close.find_leads(email, None), identity, choose)
        if by_email is not None and by_email.via == EMAIL:
            return by_email
    return match


def _best(rows: Sequence[Mapping[str, Any]], identity: Identity, choose: str) -> Match | None:
    """The match among ``rows``: those showing the email, else those showing the phone, else
    (the search matched them, their contacts no longer show it) any."""
    email, phone = identity.email, identity.phone
    by_email = [row for row in rows if email and shows(row, email=email)]
    # Rows showing only the phone, beside an email match: the person's other lead.
    phone_only = [row for row in rows if phone and shows(row, phone=phone) and row not in by_email]
    for via, found in (
        (EMAIL, by_email),
        (PHONE, [row for row in rows if phone and shows(row, phone=phone)]),
        (EMAIL if email else PHONE, list(rows)),
    ):
        if found:
            lead_id = choose_lead(found, choose)
            chosen = next(row for row in found if str(row["id"]) == lead_id)
            linked = choose_lead(phone_only, "oldest") if via == EMAIL and phone_only else None
            return Match(lead_id, via, tuple(str(r["id"]) for r in found), chosen, linked)
    return None


def about_missing_lead(exc: CloseRefused) -> bool:
    """Close refused because the lead we named does not exist (any more)."""
    if exc.response is None:
        return False
    if exc.response.status == 404:
        return True
    return any(line.startswith("lead") for line in field_errors(exc.response.body))


def shows(lead: Mapping[str, Any], *, email: str = "", phone: str = "") -> bool:
    """Whether a contact of ``lead`` has this email (any case) or this E.164 phone."""
    for contact in lead.get("contacts") or []:
        if email and email in {
            str(e.get("email", "")).lower() for e in contact.get("emails") or []
        }:
            return True
        if phone and phone in {str(p.get("phone", "")) for p in contact.get("phones") or []}:
            return True
    return False


def has_person(lead: Mapping[str, Any], identity: Identity) -> bool:
    """Whether a contact of ``lead`` is this person: by email when the submission has one (a
    shared office phone does not make two people one), else by phone."""
    if identity.email:
        return shows(lead, email=identity.email)
    return shows(lead, phone=identity.phone or "")


def created_at(lead: Mapping[str, Any]) -> float:
    """When Close made ``lead`` (its ``date_created``, epoch seconds; 0 when unreadable)."""
    raw = str(lead.get("date_created") or "")
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
