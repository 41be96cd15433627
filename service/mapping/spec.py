"""The mapping part of a source in ``config/sources.yaml``, as immutable pydantic models.

A source maps a payload to a Close lead in two declarative stages:

``extract``
    canonical field (``email``, ``address.city``, ``attribution.utm_source``, ``extra.plan``...)
    -> JMESPath expression over the *root document*::

        {"body": <parsed body>, "headers": {lower-case name: value}, "query": {...},
         "client_ip": str | None, "received_at": "<ISO-8601 UTC>", "source": "<source name>",
         "submission_id": "<id>"}

``lead``
    Close lead-create body template. Every value is a JMESPath expression over the canonical
    record (``company``, ``attribution.utm_source``...); a literal is a JMESPath literal:
    ``'Website'`` (raw string) or a JSON literal in backticks. A key left out uses the default
    rule; a key set to ``null`` is not sent.

These models are what users write; ``service.mapping.template`` compiles them into what the
Mapper runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class MappingPreset:
    """What the mapping engine uses of a provider preset (``service/config/presets.py`` reads
    the preset files and adds the delivery facts)."""

    name: str
    extract: Mapping[str, str]
    """Canonical field → expression, under the source's own ``extract``."""
    event_id: str | None = None
    """The provider's event id (delivery dedup)."""
    note_fields: str | None = None
    """Which part of the payload the note lists."""
    note_title: str | None = None
    split: str | None = None
    """The items of one delivery (JMESPath over the document), each its own submission."""
    fetch_id: str | None = None
    """The id of the person a thin payload names (JMESPath over the document): the payload
    carries only ids and the person is fetched from the provider (hydration)."""
    provider: str | None = None
    """The provider's name, for explanations ("Meta Lead Ads")."""


class PresetLookup(Protocol):
    """The known presets, by name."""

    def __contains__(self, name: object) -> bool: ...

    def get(self, name: str) -> MappingPreset: ...

    def names(self) -> list[str]: ...


#: Canonical scalar fields a source can extract, besides ``address.*``, ``attribution.*`` and
#: ``extra.*``.
PERSON_FIELDS: tuple[str, ...] = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "full_name",
    "company",
    "title",
    "website",
    "message",
)
ADDRESS_FIELDS: tuple[str, ...] = ("address_1", "address_2", "city", "state", "zipcode", "country")
ATTRIBUTION_FIELDS: tuple[str, ...] = (
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "gclid",
    "fbclid",
    "referrer",
    "page_url",
)
#: Names at the top of the canonical record that template expressions may read.
RECORD_ROOTS: frozenset[str] = frozenset(
    {*PERSON_FIELDS, "address", "attribution", "extra", "source", "received_at", "submission_id"}
)
#: Names at the top of the document extract expressions read.
DOCUMENT_ROOTS: tuple[str, ...] = (
    "body",
    "fetched",
    "headers",
    "query",
    "client_ip",
    "received_at",
    "source",
    "submission_id",
)
#: Pseudo field usable in ``required``: any of full_name, first_name, last_name.
NAME_ALIAS = "name"
_EXTRA_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def canonical_field_error(path: str) -> str | None:
    """Why ``path`` is not a canonical field name, or None when it is one."""
    if path in PERSON_FIELDS:
        return None
    group, _, rest = path.partition(".")
    if group == "address" and rest in ADDRESS_FIELDS:
        return None
    if group == "attribution" and rest in ATTRIBUTION_FIELDS:
        return None
    if group == "extra":
        if rest and set(rest) <= _EXTRA_NAME_CHARS and not rest[0].isdigit():
            return None
        return "extra fields are named extra.<name> with lower-case letters, digits and _"
    if group == "address":
        return f"unknown address field; use one of: {', '.join(ADDRESS_FIELDS)}"
    if group == "attribution":
        return f"unknown attribution field; use one of: {', '.join(ATTRIBUTION_FIELDS)}"
    known = ", ".join(PERSON_FIELDS)
    return f"unknown canonical field; use one of {known}, address.*, attribution.*, extra.*"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PhoneType = Literal["office", "mobile", "home", "direct", "fax", "other"]
EmailType = Literal["office", "personal", "other"]


class ContactTemplate(_Frozen):
    """contacts[0] of the lead: the person who submitted. Expressions over the record."""

    name: str | None = None
    title: str | None = None
    email: str | None = None
    phone: str | None = None
    urls: str | None = None
    email_type: EmailType = "office"
    phone_type: PhoneType = "office"
    url_type: Literal["url", "linkedin", "other"] = "url"
    custom: dict[str, str] = Field(default_factory=dict)


class LeadTemplate(_Frozen):
    """The Close lead-create body. Keys not given use the default rule; ``null`` omits a key."""

    name: str | None = None
    url: str | None = None
    description: str | None = None
    status: str | None = None
    custom: dict[str, str] = Field(default_factory=dict)
    contact: ContactTemplate = Field(default_factory=ContactTemplate)
    address_label: Literal["business", "mailing", "other"] = "business"
    include_contact: bool = True
    include_address: bool = True


class NoteSpec(_Frozen):
    """The submission note posted on the lead after it is created or matched.

    ``template`` is a ``string.Template`` text with placeholders ``${title}``, ``${source}``,
    ``${received_at}``, ``${page_url}``, ``${attribution}``, ``${fields}``, ``${warnings}``,
    ``${submission_id}`` and the person's fields (``${email}``, ``${full_name}``, ``${phone}``,
    ``${company}``, ``${job_title}``...).
    ``fields`` is a JMESPath expression over the root document choosing what is listed as the
    submitted fields (default: the preset's choice, else the whole body).
    """

    enabled: bool = True
    title: str | None = None
    template: str | None = None
    fields: str | None = None


class MappingLimits(_Frozen):
    """Length caps (characters) applied during normalisation."""

    text: int = Field(default=255, ge=16, le=100_000)
    message: int = Field(default=10_000, ge=16, le=1_000_000)
    extra: int = Field(default=1_000, ge=16, le=100_000)
    note: int = Field(default=50_000, ge=256, le=1_000_000)
    note_value: int = Field(default=2_000, ge=32, le=1_000_000)


def _default_required() -> list[str | list[str]]:
    return [["email", "phone", NAME_ALIAS]]


class MappingSpec(_Frozen):
    """The mapping part of one source entry; ``SourceConfig`` subclasses it."""

    preset: str | None = None
    extract: dict[str, str] = Field(default_factory=dict)
    lead: LeadTemplate | None = None
    note: NoteSpec = Field(default_factory=NoteSpec)
    default_region: str | None = None
    phone_check: Literal["valid", "possible"] = "valid"
    required: list[str | list[str]] = Field(default_factory=_default_required)
    limits: MappingLimits = Field(default_factory=MappingLimits)
    event_id: str | None = None
    """JMESPath over the extract document giving the sender's event id (delivery dedup);
    overrides the preset's. ``""`` switches the preset's off."""
    split: str | None = None
    """JMESPath over the document giving the items of one delivery (a list); each item is
    stored as its own submission, its body the item. Overrides the preset's; ``""`` switches
    it off."""


def required_groups(spec: MappingSpec) -> list[tuple[str, ...]]:
    """``required`` as groups: each group needs at least one present field."""
    return [(item,) if isinstance(item, str) else tuple(item) for item in spec.required]


def required_field_error(name: str) -> str | None:
    """Why ``name`` cannot be used in ``required``, or None."""
    if name == NAME_ALIAS:
        return None
    return canonical_field_error(name)
