"""Close's custom field names (and its users' names) as the workers last read them, for people
reading errors and records.

Close names a custom field by its id in its errors (``custom.cf_…: The Custom Field "cf_…" does
not exist.``). The workers read the organisation's schema at start and on every refresh
(``worker/mappers.py``) and remember each field's name here, in one Redis hash
(``Keys.close("fields")``); the admin plane, which has no Close API key of its own, reads it to
show names instead of ids. A field deleted in Close keeps its name here until the hash expires
(as long as a record), so the dead letters its deletion caused still read well.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from service.keys import Keys
from service.mapping import CloseSchema
from service.queue.connection import RedisClient

FIELD_ID = re.compile(r"\b(?:cf|lcf)_[A-Za-z0-9]+")


class FieldNames:
    """The id → name hash of Close's custom fields (lead and contact)."""

    def __init__(self, redis: RedisClient, keys: Keys, *, ttl: int) -> None:
        self.redis = redis
        self.key = keys.close("fields")
        self.ttl = ttl

    async def remember(self, schema: CloseSchema) -> None:
        """Add the schema's fields (names of fields no longer in it are kept until expiry)."""
        names = [
            item for f in (*schema.lead_fields, *schema.contact_fields) for item in (f.id, f.name)
        ]
        if not names:
            return
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.key, items=names)
        pipe.expire(self.key, self.ttl)
        await pipe.execute()

    async def remember_names(self, names: Mapping[str, str]) -> None:
        """Add other objects' names by id (the users the follow-ups assign, ``user_...``)."""
        if not names:
            return
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.key, items=[item for pair in names.items() for item in pair])
        pipe.expire(self.key, self.ttl)
        await pipe.execute()

    async def read(self) -> dict[str, str]:
        names: dict[str, str] = await self.redis.hgetall(self.key)  # type: ignore[assignment]
        return names


def with_field_names(text: str, names: Mapping[str, str]) -> str:
    """``text`` with every custom field id it holds replaced by the field's name."""
    if not names:
        return text
    return FIELD_ID.sub(lambda m: names.get(m.group(0), m.group(0)), text)
