"""The Mapper: one source's payload -> canonical record -> Close lead body, contact and note.

Construction compiles every expression and checks the whole mapping, raising one
``ConfigError`` that lists every problem. ``map`` never raises anything but
``MappingRejected`` for bad payload data: a failing expression or a missing required field
rejects the submission with a reason naming the field, the expression and the error.
``check`` answers only that question (would ``map`` reject, and why) for the receiver's door,
skipping the lead body and the note.

The compiled form of the mapping is ``service.mapping.template``; the lead-create body is
built by ``service.mapping.lead``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import phonenumbers

from service.envelope import Envelope
from service.errors import ConfigError, ConfigIssue, MappingRejected
from service.mapping.checkplan import CheckPlan, check_plan
from service.mapping.document import parts_read, root_document
from service.mapping.lead import lead_body
from service.mapping.normalize import Notice, RecordBuilder
from service.mapping.note import NoteContext, NoteRenderer, template_problem
from service.mapping.rejections import NAME_FIELDS, missing_required, where_looked
from service.mapping.schema import CloseSchema
from service.mapping.spec import (
    NAME_ALIAS,
    MappingPreset,
    MappingSpec,
    PresetLookup,
    required_field_error,
    required_groups,
)
from service.mapping.template import (
    DATA_ERRORS,
    CompiledTemplate,
    Issues,
    compile_template,
    evaluate,
    id_text,
)
from service.mapping.text import is_empty

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the submission is about, for deduplication."""

    email: str | None
    phone: str | None


@dataclass(frozen=True, slots=True)
class MappedLead:
    """The outcome of mapping one submission."""

    lead: dict[str, Any]
    contact: dict[str, Any] | None
    note: str | None
    identity: Identity
    record: dict[str, Any]
    warnings: tuple[str, ...]


class Mapper:
    """Maps envelopes of one source; immutable once built."""

    def __init__(
        self,
        spec: MappingSpec,
        *,
        source: str,
        presets: PresetLookup,
        schema: CloseSchema | None = None,
    ) -> None:
        self.spec = spec
        self.source = source
        self.presets = presets
        self.schema = schema
        issues = Issues(f"sources.{source}")
        self.preset: MappingPreset | None = None
        if spec.preset is not None:
            if spec.preset in presets:
                self.preset = presets.get(spec.preset)
            else:
                known = ", ".join(presets.names())
                issues.add("preset", f"unknown preset {spec.preset!r}; known: {known}")
        self.region = self._region(issues)
        self.template: CompiledTemplate = compile_template(
            spec, self.preset, issues=issues, schema=schema
        )
        self._check_required(issues)
        if spec.note.template is not None:
            problem = template_problem(spec.note.template)
            if problem:
                issues.add("note.template", problem)
        if issues.items:
            raise ConfigError(issues.items)
        self._note = NoteRenderer(spec.note.template, spec.limits)
        self._check = check_plan(self.template, self.spec)
        event_id = self.template.event_id
        self._event_parts = parts_read(event_id) if event_id is not None else None
        self._where = where_looked(self.template)
        self.provider = self.preset.provider if self.preset is not None else None

    def with_schema(self, schema: CloseSchema | None) -> Mapper:
        """The same mapping checked and resolved against a newer Close schema."""
        return Mapper(self.spec, source=self.source, presets=self.presets, schema=schema)

    def _region(self, issues: Issues) -> str | None:
        region = self.spec.default_region
        if region is None:
            return None
        if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            issues.add("default_region", f"{region!r} is not an ISO 3166 alpha-2 region code")
            return None
        return region.upper()

    def _check_required(self, issues: Issues) -> None:
        extracted = set(self.template.extract)
        for index, group in enumerate(required_groups(self.spec)):
            if any(required_field_error(name) for name in group):
                continue  # already reported as an unknown field
            names = [n for n in group if n != NAME_ALIAS]
            if NAME_ALIAS in group:
                names.extend(NAME_FIELDS)
            if not extracted & set(names):
                issues.add(
                    f"required[{index}]",
                    f"none of {', '.join(group)} is extracted by this source, so every "
                    "submission would be rejected; add an extract entry or a preset",
                )

    def event_id(self, envelope: Envelope) -> str | None:
        """The provider's event id per the preset (delivery dedup), if it has one."""
        expr = self.template.event_id
        if expr is None:
            return None
        return id_text(expr.run, root_document(envelope, self._event_parts))

    @property
    def splits(self) -> bool:
        """True when one delivery of this source may hold several submissions."""
        return self.template.split is not None

    def split(self, envelope: Envelope) -> list[Any]:
        """The items of one delivery (each becomes a submission whose body is the item);
        ``[envelope.body]`` when the source does not split. A split that finds nothing (or
        fails on the data) gives ``[]``: the delivery holds no submission."""
        expr = self.template.split
        if expr is None:
            return [envelope.body]
        try:
            items = expr.run(root_document(envelope))
        except DATA_ERRORS:
            return []
        if items is None:
            return []
        return [item for item in (items if isinstance(items, list) else [items]) if item]

    def fetch_id(self, envelope: Envelope) -> str | None:
        """The id of the person a thin payload names (hydration), or None."""
        expr = self.template.fetch_id
        return id_text(expr.run if expr else None, root_document(envelope))

    def check(self, envelope: Envelope) -> None:
        """Raise MappingRejected exactly when ``map`` would, with the same reason; else None.

        For the receiver's door. It evaluates the extract expressions that can fail (all of
        them, in order, as ``map`` does: the first failure is the reason), then, group by
        group of ``required``, extracts and normalises members only until one is present
        (a valid email settles "one of email, phone, name" without parsing the phone); a
        group with none present has had every member normalised, so the reason names the
        same dropped values. No lead body, no note. (The rejection's ``warnings`` detail names
        only the notices of the fields looked at.) A source whose template expressions can
        fail is checked by the whole mapping, without the note. The walk reads only the
        document's parts those expressions read, and keeps no notices: a payload it refuses is
        walked again with the whole document and its notices (``_refuse``), for the reason.
        """
        plan = self._check
        if plan is None:
            self._map(envelope, note=False)
            return
        # First without keeping track of the notices (nearly every payload passes): only the
        # document's parts the expressions read, each member's fields normalised once.
        document = root_document(envelope, plan.document)
        raw = {path: evaluate(expr, document) for path, expr in plan.failing}
        builder = RecordBuilder(self.spec.limits, self.region, self.spec.phone_check)
        record: dict[str, Any] = {}
        done: set[str] = set()
        for members in plan.members:
            for name, paths in members:
                if paths and paths[0] not in done:
                    for path in paths:
                        expr = plan.fields[path][1]
                        builder.add(
                            record, path, raw[path] if path in raw else evaluate(expr, document)
                        )
                        done.add(path)
                    if paths[0] in NAME_FIELDS:
                        builder.derive_names(record)
                if _present(record, name):
                    break
            else:
                self._refuse(plan, envelope)

    def _refuse(self, plan: CheckPlan, envelope: Envelope) -> None:
        """``check``'s walk again, with the whole document and the notices in extract order:
        raises the rejection ``map`` would raise."""
        document = root_document(envelope)
        raw = {path: evaluate(expr, document) for path, expr in plan.failing}
        builder = RecordBuilder(self.spec.limits, self.region, self.spec.phone_check)
        record: dict[str, Any] = {}
        done: set[str] = set()
        tagged: list[tuple[int, int, Notice]] = []  # (extract position, order, notice)

        def normalise(paths: tuple[str, ...]) -> None:
            """Extract and normalise a member's fields into ``record`` (once per field)."""
            if not paths or paths[0] in done:
                return
            for path in paths:
                position, expr = plan.fields[path]
                value = raw[path] if path in raw else evaluate(expr, document)
                start = len(builder.notices)
                builder.add(record, path, value)
                for notice in builder.notices[start:]:
                    tagged.append((position, len(tagged), notice))
                done.add(path)
            if paths[0] in NAME_FIELDS:
                builder.derive_names(record)

        for group, members in plan.groups:
            for name, paths in zip(group, members, strict=True):
                normalise(paths)
                if _present(record, name):
                    break
            else:
                noticed = [notice for _, _, notice in sorted(tagged)]
                raise self._missing(group, noticed, document)

    def map(self, envelope: Envelope) -> MappedLead:
        """Map one submission; MappingRejected when it cannot become a lead."""
        return self._map(envelope, note=True)

    def _map(self, envelope: Envelope, *, note: bool) -> MappedLead:
        document = root_document(envelope)
        raw = {path: evaluate(expr, document) for path, expr in self.template.extract.items()}
        builder = RecordBuilder(self.spec.limits, self.region, self.spec.phone_check)
        record = builder.build(raw)
        notices = builder.notices
        self._require(record, notices, document)
        record.update(
            source=envelope.source, received_at=document["received_at"], submission_id=envelope.id
        )
        lead, contact = lead_body(self.template, self.schema, self.spec.limits, record, builder)
        text = None
        if note and self.spec.note.enabled:
            text = self._note.render(
                NoteContext(
                    title=f"{self.template.note_title} \u2014 {envelope.source}",
                    source=envelope.source,
                    submission_id=envelope.id,
                    received_at=envelope.received_at,
                    fields=self._note_fields(document, notices),
                    record=record,
                    notices=tuple(notices),
                )
            )
        identity = Identity(email=record.get("email"), phone=record.get("phone"))
        logger.debug("mapped %s for %s: %d warning(s)", envelope.id, self.source, len(notices))
        return MappedLead(
            lead=lead,
            contact=contact,
            note=text,
            identity=identity,
            record=record,
            warnings=tuple(n.message for n in notices),
        )

    def _require(
        self, record: dict[str, Any], notices: list[Notice], document: dict[str, Any]
    ) -> None:
        for group in required_groups(self.spec):
            if not any(_present(record, name) for name in group):
                raise self._missing(group, notices, document)

    def _missing(
        self, group: tuple[str, ...], notices: list[Notice], document: dict[str, Any]
    ) -> MappingRejected:
        return missing_required(
            group,
            notices,
            template=self.template,
            where=self._where,
            document=document,
            provider=self.provider,
        )

    def _note_fields(self, document: dict[str, Any], notices: list[Notice]) -> Any:
        expr = self.template.note_fields
        if expr is None:
            return document["body"]
        try:
            value = expr.run(document)
        except DATA_ERRORS:
            notices.append(Notice(f"note fields expression {expr.path} failed; showing the body"))
            return document["body"]
        return document["body"] if is_empty(value) else value


def _present(record: dict[str, Any], path: str) -> bool:
    if path == NAME_ALIAS:
        return any(record.get(name) for name in NAME_FIELDS)
    group, _, name = path.partition(".")
    value = record.get(group)
    if name:
        return isinstance(value, dict) and not is_empty(value.get(name))
    return not is_empty(value)


def validate_spec(
    spec: MappingSpec,
    *,
    source: str,
    presets: PresetLookup,
    schema: CloseSchema | None = None,
) -> list[ConfigIssue]:
    """Every problem of a source's mapping (empty when it is usable); never raises."""
    try:
        Mapper(spec, source=source, presets=presets, schema=schema)
    except ConfigError as exc:
        return list(exc.issues)
    return []


def preview(mapped: MappedLead) -> dict[str, Any]:
    """What the ``map`` command prints: the body Close would get, the note, identity, warnings."""
    return {
        "lead": mapped.lead,
        "contact": mapped.contact,
        "note": mapped.note,
        "identity": {"email": mapped.identity.email, "phone": mapped.identity.phone},
        "record": mapped.record,
        "warnings": list(mapped.warnings),
    }


__all__ = [
    "Identity",
    "MappedLead",
    "Mapper",
    "preview",
    "root_document",
    "validate_spec",
]
