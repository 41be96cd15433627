"""What the follow-ups need to know about the Close organisation, read through the client: its
users (and which are active), groups and their members, sequences, connected (sender)
accounts, opportunity pipelines and their statuses, custom activity types and their fields.

A :class:`Directory` is an immutable snapshot; :func:`fetch_directory` reads only what
:class:`Needs` asks for (a source without follow-ups costs no call), and the worker re-reads it
with the custom field schema (``service/worker/followups.py``). Names match in any case, ids
exactly. Close has no "active" flag on a user: a user is active when the organisation lists a
membership for them (close-api-actions.md §1); when the organisation cannot be read, a user
listing the organisation counts as active.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from service.close.client import CloseClient


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    name: str
    active: bool


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    name: str
    members: tuple[str, ...]
    """User ids, as Close lists them."""


@dataclass(frozen=True, slots=True)
class Named:
    """A sequence, a pipeline status...: an id, a name, a kind (status, type)."""

    id: str
    name: str
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Account:
    """A connected email account a sequence can send as."""

    id: str
    user_id: str
    email: str
    name: str


@dataclass(frozen=True, slots=True)
class Pipeline:
    id: str
    name: str
    statuses: tuple[Named, ...]
    """``kind``: active, won or lost."""


@dataclass(frozen=True, slots=True)
class ActivityField:
    id: str
    name: str
    type: str
    required: bool
    multiple: bool
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ActivityType:
    id: str
    name: str
    fields: tuple[ActivityField, ...]


@dataclass(frozen=True, slots=True)
class Needs:
    """Which parts of the organisation the configured follow-ups use."""

    users: bool = False
    groups: frozenset[str] = frozenset()
    """Group names or ids whose members are needed."""
    sequences: bool = False
    pipelines: bool = False
    activity_types: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.users or self.groups or self.sequences or self.pipelines or self.activity_types
        )

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            users=self.users or other.users,
            groups=self.groups | other.groups,
            sequences=self.sequences or other.sequences,
            pipelines=self.pipelines or other.pipelines,
            activity_types=self.activity_types or other.activity_types,
        )


def _find(items: Iterable[Any], ref: str, attr: str = "name") -> Any:
    wanted = ref.strip().casefold()
    found = None
    for item in items:
        if item.id == ref:
            return item
        if found is None and str(getattr(item, attr)).casefold() == wanted:
            found = item
    return found


@dataclass(frozen=True)
class Directory:
    """A snapshot of the organisation, as far as the follow-ups need it."""

    users: tuple[User, ...] = ()
    groups: tuple[Group, ...] = ()
    sequences: tuple[Named, ...] = ()
    """``kind``: the sequence's status (active, paused...)."""
    accounts: tuple[Account, ...] = ()
    pipelines: tuple[Pipeline, ...] = ()
    activity_types: tuple[ActivityType, ...] = ()
    read: Needs = field(default_factory=Needs)
    """What was read (a part not read is empty, not missing)."""

    def user(self, ref: str) -> User | None:
        """A user by id or (any case) email."""
        return _find(self.users, ref, "email")  # type: ignore[no-any-return]

    def group(self, ref: str) -> Group | None:
        return _find(self.groups, ref)  # type: ignore[no-any-return]

    def sequence(self, ref: str) -> Named | None:
        return _find(self.sequences, ref)  # type: ignore[no-any-return]

    def pipeline(self, ref: str) -> Pipeline | None:
        return _find(self.pipelines, ref)  # type: ignore[no-any-return]

    def activity_type(self, ref: str) -> ActivityType | None:
        return _find(self.activity_types, ref)  # type: ignore[no-any-return]

    def accounts_of(self, user_id: str) -> tuple[Account, ...]:
        return tuple(a for a in self.accounts if a.user_id == user_id)

    @property
    def active(self) -> frozenset[str]:
        return frozenset(u.id for u in self.users if u.active)


def _text(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value)


def _user(row: Mapping[str, Any], members: set[str] | None) -> User:
    name = " ".join(p for p in (_text(row, "first_name"), _text(row, "last_name")) if p)
    active = row["id"] in members if members is not None else bool(row.get("organizations"))
    return User(str(row["id"]), _text(row, "email"), name or _text(row, "email"), active)


async def _memberships(close: CloseClient) -> set[str] | None:
    """The ids of the organisation's active users (None when it cannot be told)."""
    me = await close.me()
    orgs = [o for o in me.get("organizations") or [] if isinstance(o, dict) and o.get("id")]
    if not orgs:
        return None
    org = await close.organization(str(orgs[0]["id"]))
    rows = org.get("memberships")
    if not isinstance(rows, list):
        return None
    return {str(m.get("user_id")) for m in rows if isinstance(m, dict) and m.get("user_id")}


def _account(row: Mapping[str, Any]) -> Account | None:
    identities = [i for i in row.get("identities") or [] if isinstance(i, dict)]
    email = _text(identities[0], "email") if identities else _text(row, "email")
    if not row.get("id") or not row.get("user_id") or not email:
        return None
    name = _text(identities[0], "name") if identities else ""
    return Account(str(row["id"]), str(row["user_id"]), email, name)


def _statuses(row: Mapping[str, Any]) -> tuple[Named, ...]:
    return tuple(
        Named(str(s["id"]), _text(s, "label"), _text(s, "type") or "active")
        for s in row.get("statuses") or []
        if isinstance(s, dict) and s.get("id")
    )


def _activity_type(row: Mapping[str, Any]) -> ActivityType:
    fields = tuple(
        ActivityField(
            id=str(f["id"]),
            name=_text(f, "name"),
            type=_text(f, "type") or "text",
            required=bool(f.get("required")),
            multiple=bool(f.get("accepts_multiple_values")),
            choices=tuple(str(c) for c in f.get("choices") or ()),
        )
        for f in row.get("fields") or []
        if isinstance(f, dict) and f.get("id")
    )
    return ActivityType(str(row["id"]), _text(row, "name"), fields)


async def fetch_directory(close: CloseClient, needs: Needs) -> Directory:
    """Read what ``needs`` asks for (raises CloseError like every call)."""
    users: tuple[User, ...] = ()
    groups: list[Group] = []
    if needs.users or needs.groups or needs.sequences:
        members = await _memberships(close)
        users = tuple(_user(row, members) for row in await close.users() if row.get("id"))
    if needs.groups:
        listed = [row for row in await close.groups() if row.get("id")]
        for row in listed:
            wanted = {ref.casefold() for ref in needs.groups} | set(needs.groups)
            if row["id"] in wanted or _text(row, "name").casefold() in wanted:
                full = await close.group(str(row["id"]))
                ids = tuple(
                    str(m["user_id"]) for m in full.get("members") or [] if m.get("user_id")
                )
                groups.append(Group(str(row["id"]), _text(row, "name"), ids))
            else:
                groups.append(Group(str(row["id"]), _text(row, "name"), ()))
    sequences: tuple[Named, ...] = ()
    accounts: tuple[Account, ...] = ()
    if needs.sequences:
        rows = await close.sequences()
        sequences = tuple(
            Named(str(r["id"]), _text(r, "name"), _text(r, "status")) for r in rows if r.get("id")
        )
        found = (_account(row) for row in await close.connected_accounts())
        accounts = tuple(a for a in found if a is not None)
    pipelines: tuple[Pipeline, ...] = ()
    if needs.pipelines:
        rows = await close.pipelines()
        pipelines = tuple(
            Pipeline(str(r["id"]), _text(r, "name"), _statuses(r)) for r in rows if r.get("id")
        )
    types: tuple[ActivityType, ...] = ()
    if needs.activity_types:
        rows = await close.custom_activity_types()
        types = tuple(_activity_type(r) for r in rows if r.get("id") and not r.get("is_archived"))
    return Directory(users, tuple(groups), sequences, accounts, pipelines, types, needs)
