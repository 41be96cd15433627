"""A source's mapping compiled: what the Mapper runs.

A ``CompiledTemplate`` holds every expression of a ``MappingSpec`` (its ``extract``, its
``lead`` template, the note's ``fields``, the event id) compiled once, with custom field
names and status labels resolved against the Close schema. It is built once per source, when
its Mapper is built (again when a newer Close schema arrives), never per submission;
``compile_template`` reports every problem it finds to ``Issues`` instead of raising.
``evaluate`` runs one compiled expression on a submission's data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jmespath.exceptions import JMESPathError
from pydantic import BaseModel

from service.errors import ConfigIssue, MappingRejected
from service.mapping.jmes import (
    Evaluator,
    cannot_fail,
    compile_expression,
    evaluator,
    literal_value,
    reads_field,
    root_field,
    top_fields,
)
from service.mapping.schema import CloseSchema, CustomField, check_value, is_field_id
from service.mapping.spec import (
    DOCUMENT_ROOTS,
    RECORD_ROOTS,
    LeadTemplate,
    MappingPreset,
    MappingSpec,
    canonical_field_error,
    required_field_error,
    required_groups,
)
from service.mapping.text import scalar_text

#: What an expression raises on data it cannot handle (the payload's fault, not the config's).
DATA_ERRORS = (JMESPathError, ValueError, TypeError, RecursionError)


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
    cannot_fail: bool = False  # True: raises on no input (jmes.cannot_fail)
    reads: frozenset[str] | None = None
    """The document's top-level fields it reads (jmes.top_fields); None: maybe any."""


def evaluate(expr: Expr, document: Any) -> Any:
    """Run ``expr``; a failure on this data becomes MappingRejected naming it."""
    try:
        return expr.run(document)
    except DATA_ERRORS as exc:
        error = " ".join(str(exc).split()) or type(exc).__name__
        raise MappingRejected(
            f"mapping expression {expr.path} failed: {expr.text!r}: {error}",
            {"path": expr.path, "expression": expr.text, "error": error},
            code="expression-failed",
        ) from exc


def id_text(run: Callable[[Any], Any] | None, document: Any) -> str | None:
    """What an id expression gives on ``document`` as trimmed text; None when it gives
    nothing usable (no expression, a failure, a list or an object, blank)."""
    if run is None:
        return None
    try:
        value = run(document)
    except DATA_ERRORS:
        return None
    text = scalar_text(value) if not isinstance(value, (list, dict)) else None
    return text.strip() if text and text.strip() else None


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
    split: Expr | None = None
    """The items one delivery holds, each its own submission (None: the delivery is one)."""
    fetch_id: Expr | None = None
    """The id of the person a thin payload names (hydration), from the preset."""


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
        reads=top_fields(compiled),
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


def _compile_extract(
    spec: MappingSpec, preset: MappingPreset | None, issues: Issues
) -> dict[str, Expr]:
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
    preset: MappingPreset | None,
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
    split_text = preset.split if preset is not None else None
    if spec.split is not None:
        split_text = spec.split or None
    fetch_text = preset.fetch_id if preset is not None else None
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
        split=_compile("split", split_text, issues, record=False) if split_text else None,
        fetch_id=_compile("fetch_id", fetch_text, issues, record=False) if fetch_text else None,
        note_title=spec.note.title
        or (preset.note_title if preset is not None and preset.note_title else None)
        or "Web form submission",
    )
