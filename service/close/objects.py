"""The Close calls of the follow-up steps and of their configuration: the organisation's users,
groups, sequences, sender accounts, pipelines and custom activity types (read), and tasks,
sequence subscriptions, lead and contact updates, opportunities and custom activities (made,
and looked up after a lost answer), and the lead's recent notes (the note step's lookup).
close-api-actions.md has the facts.

A mixin of :class:`~service.close.client.CloseClient`: every call goes through its ``request``
(the shared limiter, the metrics, the error classes). Lists are read page by page (``_skip``,
``has_more``) up to :data:`MAX_PAGES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

PAGE = 100
MAX_PAGES = 50
"""At most this many pages of one list (5,000 objects): an organisation's users, groups..."""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _rows(value: Any) -> list[dict[str, Any]]:
    data = _dict(value).get("data")
    return [row for row in data or [] if isinstance(row, dict)]


class FollowupCalls(ABC):
    """Typed calls for the follow-ups over one abstract ``request``, which CloseClient gives."""

    @abstractmethod
    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """One Close call: the shared limiter, the metrics, the error classes."""

    async def all_pages(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every row of a paged list (``_skip``/``_limit``, ``has_more``)."""
        rows: list[dict[str, Any]] = []
        for number in range(MAX_PAGES):
            query = {**(params or {}), "_limit": str(PAGE), "_skip": str(number * PAGE)}
            answer = await self.request("GET", path, params=query)
            rows.extend(_rows(answer))
            if not _dict(answer).get("has_more"):
                break
        return rows

    # -- the organisation ---------------------------------------------------------------------

    async def me(self) -> dict[str, Any]:
        return _dict(await self.request("GET", "me/"))

    async def users(self) -> list[dict[str, Any]]:
        return await self.all_pages("user/")

    async def organization(self, organization_id: str) -> dict[str, Any]:
        return _dict(await self.request("GET", f"organization/{organization_id}/"))

    async def groups(self) -> list[dict[str, Any]]:
        return await self.all_pages("group/")

    async def group(self, group_id: str) -> dict[str, Any]:
        return _dict(await self.request("GET", f"group/{group_id}/"))

    async def sequences(self) -> list[dict[str, Any]]:
        return await self.all_pages("sequence/")

    async def connected_accounts(self) -> list[dict[str, Any]]:
        return await self.all_pages("connected_account/")

    async def pipelines(self) -> list[dict[str, Any]]:
        return await self.all_pages("pipeline/")

    async def custom_activity_types(self) -> list[dict[str, Any]]:
        return await self.all_pages("custom_activity/")

    # -- the follow-ups -----------------------------------------------------------------------

    async def create_task(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return _dict(await self.request("POST", "task/", body=body))

    async def tasks_of(self, lead_id: str, *, since: str) -> list[dict[str, Any]]:
        """Every task of the lead (any type) created at or after ``since`` (ISO-8601)."""
        params = {"lead_id": lead_id, "_type": "all", "date_created__gte": since}
        return await self.all_pages("task/", params)

    async def subscribe(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return _dict(await self.request("POST", "sequence_subscription/", body=body))

    async def subscriptions_of(self, contact_id: str, sequence_id: str) -> list[dict[str, Any]]:
        params = {"contact_id": contact_id, "sequence_id": sequence_id}
        return await self.all_pages("sequence_subscription/", params)

    async def update_lead(self, lead_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return _dict(await self.request("PUT", f"lead/{lead_id}/", body=body))

    async def update_contact(self, contact_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return _dict(await self.request("PUT", f"contact/{contact_id}/", body=body))

    async def create_opportunity(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return _dict(await self.request("POST", "opportunity/", body=body))

    async def opportunities_of(
        self, lead_id: str, *, since: str | None = None, status_type: str | None = None
    ) -> list[dict[str, Any]]:
        params = {"lead_id": lead_id}
        if since is not None:
            params["date_created__gte"] = since
        if status_type is not None:
            params["status_type"] = status_type
        return await self.all_pages("opportunity/", params)

    async def notes_of(self, lead_id: str, *, since: str) -> list[dict[str, Any]]:
        """The lead's notes created at or after ``since`` (ISO-8601), newest first."""
        params = {"lead_id": lead_id, "date_created__gte": since}
        return await self.all_pages("activity/note/", params)

    async def create_custom_activity(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return _dict(await self.request("POST", "activity/custom/", body=body))

    async def custom_activities_of(
        self, lead_id: str, type_id: str, *, since: str
    ) -> list[dict[str, Any]]:
        params = {"lead_id": lead_id, "custom_activity_type_id": type_id}
        params["date_created__gte"] = since
        return await self.all_pages("activity/custom/", params)
