"""The emulator's search index: each lead's versions with the time each becomes visible (Close's
search lags behind writes), and inverted indexes by contact email, contact phone and lead id.

A search narrows its candidates through these indexes (``narrow``) and then checks its full
query on each candidate's visible version, so an organisation holding 100,000 leads answers a
person's lookup as fast as an empty one. A query the indexes cannot narrow (a listing of every
lead, a negated condition, a custom field) scans the visible versions of every lead, as before.

The value index is a superset of what can match: it holds the values of every version still
kept (the visible one and those waiting to become visible); the query itself decides on the
visible version.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

from close_emulator.fields import JSONObject, normalize_phone

Value = tuple[str, str]
"""``("email", casefolded address)`` or ``("phone", casefolded stored phone)``."""


def lead_values(lead: JSONObject) -> set[Value]:
    """The contact emails and phones of ``lead``, as the index keys them."""
    values: set[Value] = set()
    for contact in lead.get("contacts") or []:
        for item in contact.get("emails") or []:
            values.add(("email", str(item.get("email", "")).casefold()))
        for item in contact.get("phones") or []:
            values.add(("phone", str(item.get("phone", "")).casefold()))
    return values


class SearchIndex:
    """Versions of each lead, each visible from a monotonic time on (the index lag)."""

    def __init__(self) -> None:
        self._versions: dict[str, list[tuple[float, JSONObject]]] = {}
        self._values: dict[str, set[Value]] = {}
        self._by_value: dict[Value, set[str]] = {}
        self._order: dict[str, int] = {}

    def clear(self) -> None:
        self._versions.clear()
        self._values.clear()
        self._by_value.clear()
        self._order.clear()

    def __len__(self) -> int:
        return len(self._versions)

    def publish(self, lead: JSONObject, visible_at: float, now: float) -> None:
        """Keep a copy of ``lead`` as it is now, visible to searches from ``visible_at``."""
        lead_id = str(lead["id"])
        self._order.setdefault(lead_id, len(self._order))
        versions = self._versions.setdefault(lead_id, [])
        versions.append((visible_at, copy.deepcopy(lead)))
        visible = [i for i, (at, _) in enumerate(versions) if at <= now]
        if visible:
            del versions[: visible[-1]]  # older versions no search can see any more
        values = set().union(*(lead_values(version) for _, version in versions))
        before = self._values.get(lead_id, set())
        for value in before - values:
            holders = self._by_value.get(value)
            if holders is not None:
                holders.discard(lead_id)
                if not holders:
                    del self._by_value[value]
        for value in values - before:
            self._by_value.setdefault(value, set()).add(lead_id)
        self._values[lead_id] = values

    def remove(self, lead_id: str) -> None:
        """Forget a deleted lead: no search shows it any more."""
        self._versions.pop(lead_id, None)
        self._order.pop(lead_id, None)
        for value in self._values.pop(lead_id, set()):
            holders = self._by_value.get(value)
            if holders is not None:
                holders.discard(lead_id)
                if not holders:
                    del self._by_value[value]

    def version(self, lead_id: str, now: float) -> JSONObject | None:
        """The version of the lead a search sees at ``now`` (None: not indexed yet)."""
        for at, lead in reversed(self._versions.get(lead_id, ())):
            if at <= now:
                return lead
        return None

    def visible(self, now: float, ids: Iterable[str] | None = None) -> Iterator[JSONObject]:
        """The visible versions of every lead (or of ``ids``), in creation order."""
        for lead_id in self._versions if ids is None else self.in_order(ids):
            lead = self.version(lead_id, now)
            if lead is not None:
                yield lead

    def in_order(self, ids: Iterable[str]) -> list[str]:
        """Those of ``ids`` that are indexed, in the order their leads were created."""
        return sorted((i for i in ids if i in self._order), key=self._order.__getitem__)

    def with_email(self, email: str) -> set[str]:
        """Ids of leads having (in a kept version) a contact with this email, any case."""
        return set(self._by_value.get(("email", email.casefold()), ()))

    def with_phone(self, phone: str, region: str) -> set[str]:
        """Ids of leads having (in a kept version) a contact with this phone, compared in
        E.164 as the emulator's search compares it."""
        wanted = (normalize_phone(phone, region) or (phone,))[0]
        return set(self._by_value.get(("phone", wanted.casefold()), ()))

    def known(self, ids: Iterable[Any]) -> set[str]:
        """Those of ``ids`` that are ids of indexed leads."""
        return {i for i in ids if isinstance(i, str) and i in self._versions}
