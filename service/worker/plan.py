"""A source's ``followup:`` section resolved against the Close organisation: every user,
group, sequence, pipeline, status, custom field and activity type named by id, and every
expression compiled. Built at worker start and on every refresh (``followups.py``), and by
``check-config`` and ``map``; :func:`resolve` reports every problem at once, each with its key
path, and what it cannot resolve is left out of the plan. It decides nothing about one
submission: the owner is chosen by ``owner.py``, the request bodies are built by ``bodies.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.close.directory import ActivityField, ActivityType, Directory, Named, Needs, Pipeline
from service.config.followup import (
    PERIODS,
    ActivitySpec,
    FollowupSpec,
    OpportunityChoice,
    OpportunitySpec,
    SequenceSpec,
    TaskSpec,
    UpdatePolicy,
    UpdateSpec,
)
from service.errors import ConfigIssue
from service.mapping import CloseSchema, Mapper
from service.mapping.record import RecordExpr, RecordText
from service.worker.names import Problems, custom_key, user_id
from service.worker.owner import OwnerPlan, resolve_owner

LEAD_KEYS = ("name", "url", "description", "addresses")
"""Lead fields a re-submission may update, besides custom fields (the status moves only by
``update.status`` rules; contacts through the contact itself)."""


# -- the resolved plan --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskPlan:
    text: RecordText
    type: str
    due_in: float
    assign_to: str | None
    """A user id; None: the owner."""


@dataclass(frozen=True, slots=True)
class SequencePlan:
    sequence_id: str
    name: str
    sender: str | None
    """A user id; None: the owner."""


@dataclass(frozen=True, slots=True)
class UpdatePlan:
    default: UpdatePolicy
    policies: Mapping[str, UpdatePolicy]
    """By lead key (``name``, ``custom.cf_...``)."""
    multiple: frozenset[str]
    """Keys of custom fields that hold several values."""
    contact: str
    status: tuple[tuple[frozenset[str], str], ...]
    """(status ids to move from, the status id to move to)."""

    def policy(self, key: str) -> UpdatePolicy:
        return self.policies.get(key, self.default)


@dataclass(frozen=True, slots=True)
class DealChoice:
    pipeline_id: str
    pipeline_name: str
    active_statuses: frozenset[str]
    """The pipeline's active statuses (an open opportunity has one)."""
    status_id: str | None
    value: RecordExpr | None
    value_period: str | RecordExpr | None
    confidence: int | None
    note: RecordText | None


@dataclass(frozen=True, slots=True)
class DealRule:
    when: RecordExpr
    skip: bool
    choice: DealChoice


@dataclass(frozen=True, slots=True)
class OpportunityPlan:
    base: DealChoice
    rules: tuple[DealRule, ...]
    policy: str
    user: str | None
    """A user id; None: the owner."""

    def choose(self, record: Mapping[str, Any]) -> tuple[DealChoice | None, str]:
        """The choice for ``record`` (None: a rule says skip) and which rule made it."""
        for index, rule in enumerate(self.rules):
            if rule.when.holds(record):
                return (None if rule.skip else rule.choice), f"rules[{index}]"
        return self.base, "default"


@dataclass(frozen=True, slots=True)
class ActivityPlan:
    type_id: str
    type_name: str
    fields: tuple[tuple[ActivityField, RecordExpr], ...]
    status: str
    marker: ActivityField | None = None  # the text field for the submission id (marker_field)


@dataclass(frozen=True, slots=True)
class Plan:
    """One source's follow-ups, resolved."""

    source: str
    spec: FollowupSpec
    owner: OwnerPlan | None = None
    task: TaskPlan | None = None
    sequence: SequencePlan | None = None
    update: UpdatePlan | None = None
    opportunity: OpportunityPlan | None = None
    activity: ActivityPlan | None = None

    def runs(self, on_match: bool | None, *, created: bool) -> bool:
        return self.spec.runs(on_match, created=created)


# -- what to read -------------------------------------------------------------------------------


def needs_of(spec: FollowupSpec | None) -> Needs:
    """The parts of the organisation ``spec`` names."""
    if spec is None:
        return Needs()
    owner = spec.owner
    groups = frozenset(p.group for p in owner.pools.values() if p.group) if owner else frozenset()
    named_users = owner is not None or any(
        part is not None and getattr(part, key, "owner") != "owner"
        for part, key in ((spec.task, "assign_to"), (spec.opportunity, "user"))
    )
    return Needs(
        users=named_users or spec.sequence is not None,
        groups=groups,
        sequences=spec.sequence is not None,
        pipelines=spec.opportunity is not None,
        activity_types=spec.activity is not None,
    )


# -- resolving ----------------------------------------------------------------------------------


def _named_user(ref: str, path: str, directory: Directory, problems: Problems) -> str | None:
    """``owner`` (None) or an active user's id; unknown and deactivated users are problems."""
    if ref == "owner":
        return None
    found = user_id(ref, path, directory, problems)
    if found is not None and found not in directory.active:
        problems.add(path, f"{ref!r} is deactivated in Close")
    return found


def _task(spec: TaskSpec, directory: Directory, problems: Problems) -> TaskPlan | None:
    who = _named_user(spec.assign_to, "task.assign_to", directory, problems)
    if spec.assign_to != "owner" and who is None:
        return None
    return TaskPlan(RecordText(spec.text), spec.type, spec.due_in, who)


def _sequence(spec: SequenceSpec, directory: Directory, problems: Problems) -> SequencePlan | None:
    sequence = directory.sequence(spec.name)
    if sequence is None:
        names = ", ".join(repr(s.name) for s in directory.sequences) or "none"
        problems.add("sequence.name", f"no sequence {spec.name!r} in Close (it has: {names})")
    elif sequence.kind not in ("", "active"):
        problems.add("sequence.name", f"sequence {sequence.name!r} is {sequence.kind}")
    sender = _named_user(spec.sender, "sequence.sender", directory, problems)
    if sender is not None and not directory.accounts_of(sender):
        problems.add("sequence.sender", f"{spec.sender!r} has no connected email account")
        return None
    if sequence is None or (spec.sender != "owner" and sender is None):
        return None
    return SequencePlan(sequence.id, sequence.name, sender)


def _update(
    spec: UpdateSpec, schema: CloseSchema | None, mapper: Mapper | None, problems: Problems
) -> UpdatePlan | None:
    written = set(LEAD_KEYS)
    if mapper is not None:
        written = {k for k in LEAD_KEYS if k not in mapper.template.lead or mapper.template.lead[k]}
        written |= {entry.target for entry in mapper.template.custom if entry.target}
    policies: dict[str, UpdatePolicy] = {}
    multiple: set[str] = set()
    for name, policy in spec.fields.items():
        path = f"update.fields.{name}"
        key = name if name in LEAD_KEYS else None
        custom = None
        if key is None and schema is not None:
            custom = schema.find_field(name)
            key = custom_key(custom.id) if custom is not None else None
        if key is None:
            if schema is not None:
                problems.add(
                    path,
                    f"{name!r} is neither a lead field ({', '.join(LEAD_KEYS)}) nor a lead "
                    "custom field of this organisation",
                )
            continue
        if mapper is not None and key not in written:
            problems.add(path, f"this source's lead template does not write {name!r}")
        if policy == "append" and key != "addresses" and not (custom and custom.multiple):
            problems.add(path, "append needs a field that holds several values (or addresses)")
            continue
        policies[key] = policy
    if schema is not None:
        multiple = {custom_key(f.id) for f in schema.lead_fields if f.multiple}
    status = []
    for index, rule in enumerate(spec.status):
        ids = []
        for ref in (*rule.from_, rule.to):
            found = schema.find_status(ref) if schema is not None else None
            if schema is not None and found is None:
                problems.add(
                    f"update.status[{index}]", f"no lead status {ref!r} in this organisation"
                )
            ids.append(found.id if found is not None else ref)
        status.append((frozenset(ids[:-1]), ids[-1]))
    return UpdatePlan(spec.default, policies, frozenset(multiple), spec.contact, tuple(status))


def _deal_status(ref: str, pipeline: Pipeline, path: str, problems: Problems) -> Named | None:
    for status in pipeline.statuses:
        if ref == status.id or status.name.casefold() == ref.casefold():
            return status
    labels = ", ".join(repr(s.name) for s in pipeline.statuses)
    problems.add(path, f"no status {ref!r} in pipeline {pipeline.name!r} (it has: {labels})")
    return None


def _deal_pipeline(
    choice: OpportunityChoice,
    base: DealChoice | None,
    path: str,
    directory: Directory,
    problems: Problems,
) -> Pipeline | None:
    if choice.pipeline is not None:
        found = directory.pipeline(choice.pipeline)
        if found is None:
            names = ", ".join(repr(p.name) for p in directory.pipelines) or "none"
            problems.add(path, f"no pipeline {choice.pipeline!r} (Close has: {names})")
        return found
    if base is not None:
        return directory.pipeline(base.pipeline_id)
    if not directory.pipelines:
        problems.add(path, "this organisation has no opportunity pipeline")
        return None
    return directory.pipelines[0]


def _deal_choice(
    choice: OpportunityChoice,
    base: DealChoice | None,
    path: str,
    directory: Directory,
    problems: Problems,
) -> DealChoice | None:
    """A rule's choice (``base``: the section's, which it inherits from) resolved."""
    pipeline = _deal_pipeline(choice, base, f"{path}.pipeline", directory, problems)
    if pipeline is None:
        return None
    status_id = base.status_id if base is not None and choice.pipeline is None else None
    if choice.status is not None:
        status = _deal_status(choice.status, pipeline, f"{path}.status", problems)
        if status is None:
            return None
        status_id = status.id
    given = choice.value_period
    period: str | RecordExpr | None = given
    if given is not None and given not in PERIODS:
        period = RecordExpr.compile(given)
    value = RecordExpr.compile(choice.value) if choice.value else None
    note = RecordText(choice.note) if choice.note else None
    return DealChoice(
        pipeline_id=pipeline.id,
        pipeline_name=pipeline.name,
        active_statuses=frozenset(s.id for s in pipeline.statuses if s.kind == "active"),
        status_id=status_id,
        value=value if value is not None or base is None else base.value,
        value_period=period if period is not None or base is None else base.value_period,
        confidence=choice.confidence
        if choice.confidence is not None or base is None
        else base.confidence,
        note=note if note is not None or base is None else base.note,
    )


def _opportunity(
    spec: OpportunitySpec, directory: Directory, problems: Problems
) -> OpportunityPlan | None:
    base = _deal_choice(spec, None, "opportunity", directory, problems)
    user = _named_user(spec.user, "opportunity.user", directory, problems)
    if base is None or (spec.user != "owner" and user is None):
        return None
    rules = []
    for index, rule in enumerate(spec.rules):
        choice = _deal_choice(rule, base, f"opportunity.rules[{index}]", directory, problems)
        if choice is not None:
            rules.append(DealRule(RecordExpr.compile(rule.when), rule.skip, choice))
    return OpportunityPlan(base, tuple(rules), spec.policy, user)


def _activity_field(kind: ActivityType, name: str) -> ActivityField | None:
    for found in kind.fields:
        if name == found.id or found.name.casefold() == name.casefold():
            return found
    return None


def _activity(spec: ActivitySpec, directory: Directory, problems: Problems) -> ActivityPlan | None:
    kind = directory.activity_type(spec.type)
    if kind is None:
        names = ", ".join(repr(t.name) for t in directory.activity_types) or "none"
        problems.add("activity.type", f"no custom activity type {spec.type!r} (Close has: {names})")
        return None
    fields = []
    for name, text in spec.fields.items():
        found = _activity_field(kind, name)
        if found is None:
            known = ", ".join(repr(f.name) for f in kind.fields) or "none"
            problems.add(
                f"activity.fields.{name}", f"{kind.name!r} has no field {name!r} ({known})"
            )
            continue
        fields.append((found, RecordExpr.compile(text)))
    mapped = {f.id for f, _ in fields}
    if (marker := _marker_field(spec, kind, mapped, problems)) is not None:
        mapped.add(marker.id)
    if spec.status == "published":
        for f in kind.fields:
            if f.required and f.id not in mapped:
                problems.add(
                    "activity.fields", f"{kind.name!r} requires the field {f.name!r}: map it"
                )
    return ActivityPlan(kind.id, kind.name, tuple(fields), spec.status, marker)


def _marker_field(
    spec: ActivitySpec, kind: ActivityType, mapped: set[str], problems: Problems
) -> ActivityField | None:
    """The type's text field ``marker_field`` names, not mapped otherwise."""
    if spec.marker_field is None:
        return None
    found = _activity_field(kind, spec.marker_field)
    where = "activity.marker_field"
    if found is None:
        known = ", ".join(repr(f.name) for f in kind.fields if f.type == "text") or "none"
        problems.add(where, f"{kind.name!r} has no field {spec.marker_field!r} (text: {known})")
        return None
    wrong = None
    if found.type != "text" or found.multiple:
        wrong = f"{found.name!r} is a {found.type} field; the submission id needs a text field"
    elif found.id in mapped:
        wrong = f"{found.name!r} is also mapped in activity.fields: use another field"
    if wrong:
        problems.add(where, wrong)
    return None if wrong else found


def resolve(
    source: str,
    spec: FollowupSpec,
    *,
    schema: CloseSchema | None,
    directory: Directory,
    mapper: Mapper | None = None,
) -> tuple[Plan, list[ConfigIssue]]:
    """``spec`` resolved, and every problem (a part with a problem is left out)."""
    problems = Problems(source)
    plan = Plan(
        source,
        spec,
        owner=resolve_owner(spec.owner, schema, directory, problems) if spec.owner else None,
        task=_task(spec.task, directory, problems) if spec.task else None,
        sequence=_sequence(spec.sequence, directory, problems) if spec.sequence else None,
        update=_update(spec.update, schema, mapper, problems) if spec.update else None,
        opportunity=_opportunity(spec.opportunity, directory, problems)
        if spec.opportunity
        else None,
        activity=_activity(spec.activity, directory, problems) if spec.activity else None,
    )
    return plan, problems.items
