"""The compiled mappers of every source, kept in step with the Close organisation's schema.

Custom fields and statuses given by name are resolved through Close's custom field schema and
status list, read when the worker starts (it waits until Close answers, since mapping without
them would drop those fields) and re-read every ``refresh_seconds``. A refresh that would break a
source (a field renamed in Close, say) is logged loudly and the previous mappers are kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping

from service.close.client import CloseClient
from service.close.fieldnames import FieldNames
from service.config.sources import Sources, build_mappers, build_mappers_issues
from service.errors import ConfigError
from service.mapping import CloseSchema, Mapper
from service.worker.refresh import READ_ERRORS, every, read_until_answered

logger = logging.getLogger(__name__)


async def fetch_schema(close: CloseClient) -> CloseSchema:
    """The organisation's lead and contact custom fields and lead statuses (raises CloseError)."""
    lead_fields = await close.custom_field_schema("lead")
    contact_fields = await close.custom_field_schema("contact")
    statuses = await close.lead_statuses()
    return CloseSchema.from_api(lead_fields, statuses, contact_field_schema=contact_fields)


class MapperSet(Mapping[str, Mapper]):
    """``mappers[source]``, rebuilt when Close's schema changes. Also a worker service."""

    def __init__(
        self,
        sources: Sources,
        close: CloseClient,
        *,
        refresh_seconds: float,
        names: FieldNames | None = None,
    ) -> None:
        self.sources = sources
        self.close = close
        self.refresh_seconds = refresh_seconds
        self.names = names
        """Where the fields' names are remembered for the admin plane (None: nowhere)."""
        self.schema: CloseSchema | None = None
        # Compiled without a schema first: catches every error that does not need Close.
        self._mappers = build_mappers(sources, None)

    def __getitem__(self, name: str) -> Mapper:
        return self._mappers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mappers)

    def __len__(self) -> int:
        return len(self._mappers)

    def apply(self, schema: CloseSchema) -> bool:
        """Rebuild against ``schema``; False (old mappers kept) when a source no longer fits."""
        if schema == self.schema:
            return True
        try:
            mappers = build_mappers(self.sources, schema)
        except ConfigError as exc:
            logger.error(
                "Close's custom fields or statuses no longer fit the sources; keeping "
                "the previous mapping:\n%s",
                exc,
            )
            return False
        self._mappers = mappers
        self.schema = schema
        return True

    async def _fetch(self) -> CloseSchema:
        schema = await fetch_schema(self.close)
        if self.names is not None:
            await self.names.remember(schema)
        return schema

    async def start(self, stopping: asyncio.Event) -> None:
        """Wait until Close's schema has been read (or stopping is asked)."""
        schema = await read_until_answered(
            self._fetch, stopping, "Close's custom fields and statuses"
        )
        if schema is None or self.apply(schema):
            return
        # The sources name fields or statuses this organisation does not have.
        raise ConfigError(build_mappers_issues(self.sources, schema))

    async def run(self, stopping: asyncio.Event) -> None:
        """Re-read the schema every ``refresh_seconds`` until stopping."""
        async for _ in every(self.refresh_seconds, stopping):
            try:
                self.apply(await self._fetch())
            except READ_ERRORS as exc:
                logger.warning("refreshing Close's schema failed (%s); keeping the last one", exc)
