"""Finding a person's submissions: by email, phone, submission id or lead id (the dashboard's
search, "did jane@acme.com's demo request reach Close?").

A record holds the payload only: who a submission is about is known once it is mapped. So:

- **An index, written by the worker.** Every transition of the worker that carries the
  person's identities (the hashed email and phone its locks use, ``Keys.person``) adds the
  submission to that person's sorted set, and every transition naming a lead adds it to the
  lead's (``Keys.lead_submissions``), in the same script (``queue/transitions.py``). Each holds
  ids scored by receipt time and lives as long as a record. The door cannot write it: it does
  not map what it stores.
- **A bounded scan for the rest.** A submission no worker has mapped yet (queued, or retrying
  before its lookup), one the door refused as spam, or one the mapping rejected is in no index.
  The newest :data:`SCAN_LIMIT` submissions in those states are mapped here, when searching, with
  the receiver's mappers; anything older in them is not found (the page says so).

Key names carry only hashes; the email or phone searched for is never logged or stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from service.envelope import Envelope
from service.errors import MappingRejected
from service.keys import identity_keys
from service.mapping import Mapper
from service.mapping.normalize import normalize_email, normalize_phone
from service.queue import Queue, Record, Selection, State

SCAN_LIMIT = 300
"""How many of the newest unindexed submissions (:data:`SCAN_STATES`) a search maps."""
RESULT_LIMIT = 100
SCAN_STATES: tuple[State, ...] = ("queued", "processing", "retrying", "rejected")
"""States a submission can be in without a worker having indexed it."""
SUBMISSION_ID = re.compile(r"sub_[A-Za-z0-9_-]{1,100}")
LEAD_ID = re.compile(r"lead_[A-Za-z0-9]{1,100}")

Kind = Literal["submission", "lead", "email", "phone"]


@dataclass(frozen=True, slots=True)
class Query:
    """What a search asks for: the kind of key and the identities it stands for."""

    kind: Kind
    value: str
    identities: tuple[str, ...] = ()


class BadQuery(ValueError):
    """A search text that is none of an email, a phone, a submission id or a lead id."""


@dataclass(frozen=True, slots=True)
class Found:
    query: Query
    records: tuple[Record, ...]
    scanned: int
    """How many unindexed submissions were mapped to look for the person."""
    scan_truncated: bool
    """More unindexed submissions exist than were scanned."""


class PersonFinder:
    """Search over one receiver's sources (their mappers know how to read each payload)."""

    def __init__(self, mappers: Mapping[str, Mapper]) -> None:
        self.mappers = mappers
        regions = {mapper.region for mapper in mappers.values() if mapper.region}
        self.regions: tuple[str | None, ...] = (*sorted(regions), None)

    def parse(self, text: str) -> Query:
        """The query ``text`` stands for (BadQuery saying what can be searched)."""
        text = text.strip()
        if SUBMISSION_ID.fullmatch(text):
            return Query("submission", text)
        if LEAD_ID.fullmatch(text):
            return Query("lead", text)
        if "@" in text:
            email, _ = normalize_email(text)
            if email is None:
                raise BadQuery(f"{text!r} is not an email address")
            return Query("email", email, tuple(identity_keys(email, None)))
        if sum(ch.isdigit() for ch in text) >= 5:
            phones = self._phones(text)
            if not phones:
                raise BadQuery(f"{text!r} is not a phone number (with +country code: +44...)")
            keys = [key for phone in phones for key in identity_keys(None, phone)]
            return Query("phone", ", ".join(phones), tuple(keys))
        raise BadQuery("search by email, phone, submission id (sub_...) or lead id (lead_...)")

    def _phones(self, text: str) -> list[str]:
        """The E.164 numbers ``text`` can be, read with each source's default region."""
        found = []
        for region in self.regions:
            phone, _ = normalize_phone(text, region, "possible")
            if phone:
                found.append(phone)
        return list(dict.fromkeys(found))

    def identities_of(self, record: Record) -> set[str]:
        """The identity keys the worker would give ``record`` (none when it cannot be read)."""
        mapper = self.mappers.get(record.source)
        if mapper is None or not record.envelope:
            return set()
        try:
            identity = mapper.map(Envelope.from_json(record.envelope)).identity
        except (MappingRejected, ValueError, KeyError, TypeError):
            return set()
        return set(identity_keys(identity.email, identity.phone))

    async def find(self, queue: Queue, query: Query) -> Found:
        """The submissions ``query`` names, newest first (at most :data:`RESULT_LIMIT`)."""
        index = queue.index
        if query.kind == "submission":
            record = await queue.records.get(query.value)
            return Found(query, (record,) if record else (), 0, False)
        lead = query.value if query.kind == "lead" else None
        ids = await index.submissions_of(query.identities, lead, limit=RESULT_LIMIT)
        scanned, truncated = 0, False
        if query.identities:
            wanted = set(query.identities)
            recent, truncated = await index.page(Selection(states=SCAN_STATES, limit=SCAN_LIMIT))
            scanned = len(recent)
            ids += [r.id for r in recent if r.id not in ids and self.identities_of(r) & wanted]
        records = [r for r in await index.records(ids) if r is not None]
        return Found(query, tuple(newest_first(records))[:RESULT_LIMIT], scanned, truncated)


def newest_first(records: Iterable[Record]) -> list[Record]:
    return sorted(records, key=lambda record: record.received_at, reverse=True)
