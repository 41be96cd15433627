"""Resolving the names a ``followup:`` section uses against the Close organisation, with every
problem kept under its key path (``sources.<name>.followup...``)."""

from __future__ import annotations

from service.close.directory import Directory
from service.errors import ConfigIssue


class Problems:
    """Issues under ``sources.<name>.followup``."""

    def __init__(self, source: str) -> None:
        self.prefix = f"sources.{source}.followup"
        self.items: list[ConfigIssue] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(ConfigIssue(f"{self.prefix}.{path}", message))


def user_id(ref: str, path: str, directory: Directory, problems: Problems) -> str | None:
    """The id of the user ``ref`` names (email or id); a problem when there is none."""
    user = directory.user(ref)
    if user is None:
        problems.add(path, f"no user {ref!r} in this Close organisation")
        return None
    return user.id


def custom_key(field_id: str) -> str:
    """A custom field's key in a lead body: ``custom.cf_...``."""
    return f"custom.{field_id}"
