"""Settings of the Close emulator: org data, fault knobs, rate limits, and their CLI flags.

Every knob can come from the environment (prefix ``EMULATOR_``, e.g. ``EMULATOR_ERROR_RATE=0.1``),
from command-line flags (``add_emulator_arguments`` / ``options_from_args``), or be changed at
runtime: assignments to ``EmulatorState.options`` are validated, and ``POST /_emulator/config``
applies a validated JSON patch. Lists accept JSON in the environment; ``EMULATOR_API_KEYS`` and
``EMULATOR_ERROR_STATUSES`` also accept comma-separated values.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from close_emulator.ids import derived_id, with_derived_id
from close_emulator.team import (
    ConnectedAccount,
    CustomActivityType,
    CustomFieldSpec,
    Group,
    Pipeline,
    Sequence,
    default_pipelines,
)
from close_emulator.values import FieldType

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_API_KEY = "emulator-api-key"

CustomFieldType = FieldType
RateLimitBody = Literal["wrapped", "flat", "none"]


class LeadStatus(BaseModel):
    """One lead status of the emulated organisation; a bare string is read as the label."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = ""
    label: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _from_label(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = {"label": value}
        return with_derived_id(value, "stat_", "label")


class User(BaseModel):
    """A user of the emulated organisation (``GET /user/``); the first active one owns the API
    key (``GET /me/``) and is the creator of everything the emulator makes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = ""
    email: str = Field(min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str = Field(min_length=1)
    active: bool = True
    """An inactive user is still listed (Close lists users who left) but owns nothing."""

    @model_validator(mode="before")
    @classmethod
    def _fill_id(cls, value: Any) -> Any:
        return with_derived_id(value, "user_", "email")

    @model_validator(mode="after")
    def _check(self) -> User:
        if not self.id.startswith("user_"):
            raise ValueError("user ids start with user_")
        return self


DEFAULT_USER = User(
    id=derived_id("user_", "emulator"), email="emulator@example.com", name="Emulator User"
)


EVENT_OBJECT_TYPES = {
    "lead": "lead",
    "contact": "contact",
    "note": "activity.note",
    "task": "task.lead",
    "opportunity": "opportunity",
    "custom_activity": "activity.custom_activity",
    "subscription": "sequence_subscription",
}
"""The event log's ``object_type`` per kind of emulated object. The first three are in the
material; the others are UNKNOWN there (``event_object_types`` changes them)."""


def _default_statuses() -> list[LeadStatus]:
    return [LeadStatus(label=label) for label in ("Potential", "Bad Fit", "Qualified", "Customer")]


def _default_lead_fields() -> list[CustomFieldSpec]:
    return [
        CustomFieldSpec(name="Lead Source", type="text"),
        CustomFieldSpec(name="Budget", type="choices", choices=["<10k", "10k-50k", ">50k"]),
        CustomFieldSpec(
            name="Interests",
            type="choices",
            choices=["Product", "Pricing", "Partnership", "Support"],
            accepts_multiple_values=True,
        ),
        CustomFieldSpec(name="External ID", type="text"),
        CustomFieldSpec(name="Employees", type="number"),
    ]


def _split_list(value: Any) -> Any:
    """Environment helper: a JSON list, or comma-separated values."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [part.strip() for part in text.split(",") if part.strip()]


class EmulatorOptions(BaseSettings):
    """Everything that shapes the emulator's behaviour. Assignments are validated."""

    model_config = SettingsConfigDict(
        env_prefix="EMULATOR_", extra="forbid", validate_assignment=True
    )

    # Auth and organisation data.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=lambda: [DEFAULT_API_KEY])
    """Accepted API keys (Basic ``<key>:`` or Bearer). An empty list accepts any non-empty key."""
    organization_id: str = derived_id("orga_", "emulator")
    organization_name: str = "Emulated organisation"
    users: list[User] = Field(default_factory=lambda: [DEFAULT_USER], min_length=1)
    user_id: str = DEFAULT_USER.id
    """The API key's user (``GET /me/``, ``created_by``): by default the first active user."""
    user_name: str = DEFAULT_USER.name
    app_url: str = "https://app.close.com"
    """Where the leads' ``html_url`` points: ``<app_url>/lead/<id>/``. Close's app by default;
    the local stack points it at the emulator's own lead page."""
    lead_statuses: list[LeadStatus] = Field(default_factory=_default_statuses, min_length=1)
    lead_custom_fields: list[CustomFieldSpec] = Field(default_factory=_default_lead_fields)
    contact_custom_fields: list[CustomFieldSpec] = Field(default_factory=list)
    default_region: str = "US"
    """Region used to read phone numbers written without a country code."""
    reject_invalid_phones: bool = False
    """400 for a phone that cannot be parsed (real behaviour UNKNOWN; default keeps it as sent)."""
    max_list_limit: int = Field(100, ge=1)
    max_search_limit: int = Field(200, ge=1)

    # The sales side (team.py models; sales.py and deals.py serve them).
    groups: list[Group] = Field(default_factory=list)
    connected_accounts: list[ConnectedAccount] | None = None
    """Sender accounts; None: one per user, with the user's own address."""
    sequences: list[Sequence] = Field(default_factory=list)
    pipelines: list[Pipeline] = Field(default_factory=default_pipelines, min_length=1)
    custom_activity_types: list[CustomActivityType] = Field(default_factory=list)
    value_currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    """The organisation's currency: opportunity values are in its minor unit (cents)."""
    user_field_values: Literal["known", "any"] = "known"
    """A ``user`` custom field given an id that is no user of the organisation: 400 (``known``)
    or stored as sent (``any``). Close's answer is UNKNOWN; deactivated users are accepted, as
    Close's own picker lists them."""
    duplicate_subscriptions: Literal["reject", "allow"] = "reject"
    """Subscribing a contact to a sequence it is active in again: 400 (``reject``) or a second
    subscription (``allow``); Close's answer is UNKNOWN."""
    unsubscribed_subscriptions: Literal["allow", "reject"] = "allow"
    """Subscribing a contact whose email is unsubscribed: created (its email steps would be
    skipped, as Close documents) or 400; whether Close refuses is UNKNOWN."""
    merge_custom_fields: Literal["destination", "source"] = "destination"
    """``POST /lead/merge/``: whose value a single-value custom field both leads have keeps
    (the other lead's fills the fields one of them lacks; multi-value fields get the union).
    What Close keeps on a conflict is UNKNOWN."""

    # Faults.
    latency_ms: float = Field(0.0, ge=0)
    latency_jitter_ms: float = Field(0.0, ge=0)
    error_rate: float = Field(0.0, ge=0, le=1)
    """Probability of a 5xx answered before the request is applied (nothing changes)."""
    error_after_apply_rate: float = Field(0.0, ge=0, le=1)
    """Probability of a 5xx answered after the request was applied (the 'unknown outcome')."""
    error_statuses: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [502, 503, 504], min_length=1
    )
    hang_rate: float = Field(0.0, ge=0, le=1)
    """Probability of not answering for ``hang_seconds`` and then answering 504."""
    hang_seconds: float = Field(120.0, ge=0)
    seed: int | None = None
    """Seed of the fault dice and of generated ids; None draws from the OS."""

    # Rate limits.
    rate_limit: int | None = Field(None, ge=1)
    """Requests per ``rate_window`` seconds per API key and endpoint group; None disables."""
    rate_window: float = Field(1.0, gt=0)
    group_rate_limits: dict[str, int] = Field(default_factory=dict)
    """Per-group overrides of ``rate_limit`` (groups: see ``emulator_limits.ENDPOINT_GROUPS``)."""
    org_rate_limit: int | None = Field(None, ge=1)
    """Organisation-wide limit per group across all keys (Close uses 3x the key limit)."""
    rate_limit_body: RateLimitBody = "wrapped"
    rate_limit_header: bool = True
    """Send ``RateLimit: limit=N, remaining=N, reset=N``."""
    legacy_rate_limit_headers: bool = False
    """Send ``X-Rate-Limit-Limit/Remaining/Reset`` (fractional reset)."""
    retry_after_header: bool = False
    """Send ``Retry-After`` (whole seconds) on 429."""

    # Search index.
    search_lag_seconds: float = Field(0.0, ge=0)
    """Writes become visible to /data/search/ only this long after they happen."""

    # Event log (events.py): what close-api-actions.md §8 leaves UNKNOWN.
    event_lag_seconds: float = Field(0.0, ge=0)
    """Events become visible to ``GET /event/`` only this long after they happen."""
    event_lag_jitter_seconds: float = Field(0.0, ge=0)
    """Extra random delay per event, 0..N s: events then show up out of order."""
    event_lead_contacts: bool = False
    """A lead event's ``data`` carries its ``contacts``; else their ids (``contact_ids``)."""
    event_object_types: dict[str, str] = Field(default_factory=lambda: dict(EVENT_OBJECT_TYPES))
    """The ``object_type`` of each kind of object the emulator logs events for."""
    event_log_access: Literal["allow", "forbid"] = "allow"
    """``forbid``: the API key may not read the event log (``GET /event/`` answers 403)."""
    event_key_role: Literal["admin", "user"] = "admin"
    """A ``user`` key sees ``data``/``previous_data`` only for events younger than an hour."""

    request_log_limit: int = Field(100_000, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _key_owner(cls, data: Any) -> Any:
        """Users given without ``user_id``: the API key belongs to the first active one."""
        if not isinstance(data, dict) or "user_id" in data or not data.get("users"):
            return data
        try:
            users = [User.model_validate(user) for user in data["users"]]
        except (ValidationError, TypeError):
            return data  # the field's own validation names the problem
        owner = next((user for user in users if user.active), None)
        if owner is None:
            raise ValueError("users: at least one user must be active (the API key's owner)")
        return {**data, "user_id": owner.id, "user_name": owner.name}

    @field_validator("app_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("api_keys", "error_statuses", mode="before")
    @classmethod
    def _env_list(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("error_statuses")
    @classmethod
    def _check_statuses(cls, value: list[int]) -> list[int]:
        if any(not 500 <= status <= 599 for status in value):
            raise ValueError("error statuses must be 5xx")
        return value

    @field_validator("default_region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {value!r}")
        return region

    @field_validator("group_rate_limits")
    @classmethod
    def _check_group_limits(cls, value: dict[str, int]) -> dict[str, int]:
        if any(limit < 1 for limit in value.values()):
            raise ValueError("group rate limits must be at least 1")
        return value

    @model_validator(mode="after")
    def _check_unique_ids(self) -> EmulatorOptions:
        for name, ids in (
            ("lead_statuses", [status.id for status in self.lead_statuses]),
            ("lead_custom_fields", [field.id for field in self.lead_custom_fields]),
            ("contact_custom_fields", [field.id for field in self.contact_custom_fields]),
            ("users", [user.id for user in self.users]),
            ("groups", [group.id for group in self.groups]),
            ("sequences", [sequence.id for sequence in self.sequences]),
            ("pipelines", [pipeline.id for pipeline in self.pipelines]),
            ("custom_activity_types", [kind.id for kind in self.custom_activity_types]),
        ):
            if len(set(ids)) != len(ids):
                raise ValueError(f"{name} has duplicate ids")
        refs = {user.id for user in self.users} | {user.email.casefold() for user in self.users}
        named = [(f"groups[{g.name}]", m) for g in self.groups for m in g.members]
        named += [("connected_accounts", a.user) for a in self.connected_accounts or ()]
        for where, ref in named:
            if ref.casefold() not in refs and ref not in refs:
                raise ValueError(f"{where}: {ref!r} is not one of the users")
        return self

    def patched(self, patch: dict[str, Any]) -> EmulatorOptions:
        """A validated copy with ``patch`` applied (the environment is not read again)."""
        base = self.model_dump()
        if "users" in patch and "user_id" not in patch:
            del base["user_id"], base["user_name"]  # the new users' first active one owns the key
        return EmulatorOptions.model_validate({**base, **patch})


class Fault(BaseModel):
    """A scripted fault: the next ``count`` matching requests get this answer instead.

    ``method``/``path`` None match anything; ``path`` may use ``*`` wildcards. With
    ``after_apply`` the request is handled first (a lead is created) and the answer is then
    replaced. ``hang`` waits ``hang_seconds`` (default: the options' value) before answering.
    ``body``: dict/list → JSON, str → sent as text, None → empty. ``status`` defaults to 504
    for a hang and 503 otherwise.
    """

    model_config = ConfigDict(extra="forbid")

    method: str | None = None
    path: str | None = None
    status: int | None = Field(None, ge=100, le=599)
    count: int = Field(1, ge=1)
    after_apply: bool = False
    hang: bool = False
    hang_seconds: float | None = Field(None, ge=0)
    delay_ms: float = Field(0.0, ge=0)
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)

    @property
    def answer_status(self) -> int:
        if self.status is not None:
            return self.status
        return 504 if self.hang else 503


_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--latency-ms", "latency_ms", float, "fixed latency added to every /api/ request"),
    ("--latency-jitter-ms", "latency_jitter_ms", float, "extra random latency, 0..N ms"),
    ("--error-rate", "error_rate", float, "probability of a 5xx before applying"),
    (
        "--error-after-apply-rate",
        "error_after_apply_rate",
        float,
        "probability of a 5xx after applying (outcome unknown to the client)",
    ),
    ("--hang-rate", "hang_rate", float, "probability of hanging, then answering 504"),
    ("--hang-seconds", "hang_seconds", float, "how long a hang lasts"),
    ("--rate-limit", "rate_limit", int, "requests per window per key and endpoint group"),
    ("--rate-window", "rate_window", float, "rate limit window in seconds"),
    ("--search-lag", "search_lag_seconds", float, "seconds before writes become searchable"),
    ("--event-lag", "event_lag_seconds", float, "seconds before events become listed"),
    ("--seed", "seed", int, "seed for reproducible faults and ids"),
    ("--region", "default_region", str, "default phone region, e.g. US or GB"),
)


FLAG_DESTS: tuple[str, ...] = (*(dest for _, dest, _, _ in _FLAGS), "api_keys")
"""The options the command-line flags set."""


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's flags; unset flags fall back to ``EMULATOR_*`` env, then defaults
    (``org.options_from_args`` reads them back)."""
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    for flag, dest, kind, text in _FLAGS:
        parser.add_argument(flag, dest=dest, type=kind, default=None, help=text)
    parser.add_argument(
        "--org",
        dest="org_file",
        type=Path,
        default=None,
        metavar="FILE",
        help="the organisation file (users, statuses, custom fields; close_emulator/org.py); "
        "default: the built-in organisation",
    )
    parser.add_argument(
        "--api-key",
        dest="api_keys",
        action="append",
        default=None,
        help=f"accepted API key (repeatable; default {DEFAULT_API_KEY})",
    )
