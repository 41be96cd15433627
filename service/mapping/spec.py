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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.errors import ConfigIssue
from service.mapping.functions import (
    Evaluator,
    cannot_fail,
    compile_expression,
    evaluator,
    literal_value,
    reads_field,
    root_field,
)
from service.mapping.schema import CloseSchema, CustomField, check_value, is_field_id

if TYPE_CHECKING:
    from service.mapping.presets import Preset

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


def required_groups(spec: MappingSpec) -> list[tuple[str, ...]]:
    """``required`` as groups: each group needs at least one present field."""
    return [(item,) if isinstance(item, str) else tuple(item) for item in spec.required]


def required_field_error(name: str) -> str | None:
    """Why ``name`` cannot be used in ``required``, or None."""
    if name == NAME_ALIAS:
        return None
    return canonical_field_error(name)


# --- Compiled form ------------------------------------------------------------------------
# The models above are what users write; below is what the Mapper runs: every expression
# compiled once, custom field names and status labels resolved against the Close schema.


class Issues:
    """Collects ConfigIssues under one key-path prefix (``sources.<name>``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.items: list[ConfigIssue] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(ConfigIssue(f"{self.prefix}.{path}", message))


@dataclass(frozen=True, slots=True)
class Expr:
    """A compiled expression and where it came from (for error messages)."""

    path: str
    text: str
    run: Evaluator
    reads_message: bool = False
    literal: Any = None  # the value when the whole expression is a literal
    cannot_fail: bool = False  # True: raises on no input (functions.cannot_fail)


@dataclass(frozen=True, slots=True)
class CustomEntry:
    """A custom field mapping: ``target`` is ``custom.cf_...`` (None: name not resolvable yet)."""

    name: str
    expr: Expr
    target: str | None
    field: CustomField | None


@dataclass(frozen=True)
class CompiledTemplate:
    """Everything a Mapper evaluates, compiled."""

    spec: LeadTemplate
    extract: dict[str, Expr]
    lead: dict[str, Expr | None]
    contact: dict[str, Expr | None]
    custom: list[CustomEntry]
    contact_custom: list[CustomEntry]
    event_id: Expr | None
    note_fields: Expr | None
    note_title: str
    message_elsewhere: bool = False


def _compile(path: str, text: str, issues: Issues, *, record: bool) -> Expr | None:
    compiled, problem = compile_expression(text)
    if compiled is None:
        issues.add(path, problem or "invalid expression")
        return None
    root = root_field(compiled)
    if record and root is not None and root not in RECORD_ROOTS:
        issues.add(
            path,
            f"reads record field {root!r}, which does not exist (known: "
            f"{', '.join(sorted(RECORD_ROOTS))}); for a literal text write '{root}' in "
            "single quotes",
        )
        return None
    if not record and root is not None and root not in DOCUMENT_ROOTS:
        issues.add(
            path,
            f"reads {root!r} from the top of the document, which has only "
            f"{', '.join(DOCUMENT_ROOTS)}; did you mean body.{root}?",
        )
        return None
    reads_message = record and reads_field(compiled, "message")
    literal = literal_value(compiled)[1]
    return Expr(
        f"{issues.prefix}.{path}",
        text,
        evaluator(compiled),
        reads_message,
        literal,
        cannot_fail=cannot_fail(compiled),
    )


def _compile_keys(
    model: BaseModel, keys: tuple[str, ...], base: str, issues: Issues
) -> dict[str, Expr | None]:
    result: dict[str, Expr | None] = {}
    for key in keys:
        if key not in model.model_fields_set:
            continue
        text = getattr(model, key)
        if text is None:
            result[key] = None
            continue
        expr = _compile(f"{base}.{key}", text, issues, record=True)
        if expr is not None:
            result[key] = expr
    return result


def _compile_custom(
    entries: dict[str, str],
    base: str,
    issues: Issues,
    schema: CloseSchema | None,
    *,
    contact: bool,
) -> list[CustomEntry]:
    result: list[CustomEntry] = []
    for key, text in entries.items():
        path = f"{base}.{key}"
        expr = _compile(path, text, issues, record=True)
        if expr is None:
            continue
        custom = schema.find_field(key, contact=contact) if schema is not None else None
        if schema is not None and custom is None:
            known = schema.contact_fields if contact else schema.lead_fields
            names = ", ".join(sorted(repr(f.name) for f in known)[:30]) or "none"
            issues.add(path, f"unknown custom field {key!r}; this organisation has: {names}")
            continue
        if custom is not None:
            problem = None if expr.literal is None else check_value(custom, expr.literal).problem
            if problem:
                issues.add(path, f"{expr.literal!r}: {problem}")
                continue
        target_id = custom.id if custom is not None else (key if is_field_id(key) else None)
        target = f"custom.{target_id}" if target_id else None
        result.append(CustomEntry(name=key, expr=expr, target=target, field=custom))
    return result


def _check_status(expr: Expr | None, issues: Issues, schema: CloseSchema | None) -> None:
    value = expr.literal if expr is not None else None
    if isinstance(value, str) and schema is not None and schema.find_status(value) is None:
        labels = ", ".join(repr(label) for label in schema.status_labels()) or "none"
        issues.add("lead.status", f"unknown lead status {value!r}; this organisation has: {labels}")


def _compile_extract(spec: MappingSpec, preset: Preset | None, issues: Issues) -> dict[str, Expr]:
    merged = dict(preset.extract) if preset is not None else {}
    merged.update(spec.extract)
    result: dict[str, Expr] = {}
    for path, text in merged.items():
        if not text.strip() and path in spec.extract:
            continue  # an empty expression switches a preset's mapping off
        problem = canonical_field_error(path)
        if problem:
            issues.add(f"extract.{path}", problem)
            continue
        expr = _compile(f"extract.{path}", text, issues, record=False)
        if expr is not None:
            result[path] = expr
    return result


def compile_template(
    spec: MappingSpec,
    preset: Preset | None,
    *,
    issues: Issues,
    schema: CloseSchema | None,
) -> CompiledTemplate:
    """Compile and check a source's mapping; problems go to ``issues``."""
    template = spec.lead or LeadTemplate()
    for index, group in enumerate(required_groups(spec)):
        for name in group:
            problem = required_field_error(name)
            if problem:
                issues.add(f"required[{index}]", f"{name!r}: {problem}")
    note_text = spec.note.fields or (preset.note_fields if preset is not None else None)
    note_fields = _compile("note.fields", note_text, issues, record=False) if note_text else None
    event_text = preset.event_id if preset is not None else None
    if spec.event_id is not None:
        event_text = spec.event_id or None
    extract = _compile_extract(spec, preset, issues)
    lead = _compile_keys(template, ("name", "url", "description", "status"), "lead", issues)
    _check_status(lead.get("status"), issues, schema)
    contact = _compile_keys(
        template.contact, ("name", "title", "email", "phone", "urls"), "lead.contact", issues
    )
    custom = _compile_custom(template.custom, "lead.custom", issues, schema, contact=False)
    contact_custom = _compile_custom(
        template.contact.custom, "lead.contact.custom", issues, schema, contact=True
    )
    elsewhere = [e for e in [*lead.values(), *contact.values()] if e is not None]
    elsewhere += [entry.expr for entry in [*custom, *contact_custom]]
    return CompiledTemplate(
        spec=template,
        extract=extract,
        lead=lead,
        contact=contact,
        custom=custom,
        contact_custom=contact_custom,
        message_elsewhere=any(expr.reads_message for expr in elsewhere),
        event_id=_compile("event_id", event_text, issues, record=False) if event_text else None,
        note_fields=note_fields,
        note_title=spec.note.title
        or (preset.note_title if preset is not None and preset.note_title else None)
        or "Web form submission",
    )
