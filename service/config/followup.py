"""A source's ``followup:`` section: what happens after the lead is created (and, when asked,
after a match to an existing lead): who owns it, the task for them, the email sequence, the
update of a matched lead, the opportunity, the submission as a custom activity.

Only the shape and the expressions are checked here (every problem with its key path, when the
sources file is loaded); names of users, groups, sequences, pipelines, statuses, custom fields
and activity types are resolved against Close by ``service/worker/plan.py`` (at worker start,
on every refresh, and by ``check-config``). docs/followups.md describes every key.

Expressions (``if``, ``value``, activity fields) are JMESPath over the canonical record, like
the lead template; texts (task ``text``, opportunity ``note``) are ``${field}`` templates over
it (``service/mapping/record.py``). Users are named by email or ``user_...`` id.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.mapping.record import expression_problem, text_problem

UpdatePolicy = Literal["fill_if_empty", "overwrite", "append", "never"]
PERIODS = ("one_time", "monthly", "annual")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration_seconds(value: Any) -> float:
    """``90``, ``"30s"``, ``"15m"``, ``"2h"``, ``"1d"``, ``"1w"`` as seconds (ValueError)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError("a duration: a number of seconds, or like 30s, 15m, 2h, 1d, 1w")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0 or seconds > 366 * 86400:
        raise ValueError("a duration between 0 and a year")
    return seconds


def _expression(value: str | None) -> str | None:
    if value is not None:
        problem = expression_problem(value)
        if problem:
            raise ValueError(problem)
    return value


def _text(value: str | None) -> str | None:
    if value is not None:
        problem = text_problem(value)
        if problem:
            raise ValueError(problem)
    return value


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- owner ------------------------------------------------------------------------------------


class PoolMember(_Spec):
    """A user of a round-robin pool; ``weight`` 2 gets twice the leads of weight 1."""

    user: str = Field(min_length=1)
    weight: int = Field(1, ge=1, le=100)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        return {"user": value} if isinstance(value, str) else value


class PoolSpec(_Spec):
    """A round-robin pool: listed ``users`` (weighted or not) or a Close ``group``'s members."""

    users: tuple[PoolMember, ...] = ()
    group: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> PoolSpec:
        if bool(self.users) == bool(self.group):
            raise ValueError("a pool has either 'users' or 'group'")
        return self


class OwnerRule(_Spec):
    """``if`` the expression holds on the canonical record: this ``user``, or this ``pool``."""

    when: str = Field(alias="if")
    user: str | None = None
    pool: str | None = None

    _check_if = field_validator("when")(_expression)

    @model_validator(mode="after")
    def _one_target(self) -> OwnerRule:
        if (self.user is None) == (self.pool is None):
            raise ValueError("a rule chooses either a 'user' or a 'pool'")
        return self


class OwnerSpec(_Spec):
    """Who owns the lead: the first rule that holds, else ``user`` or ``pool``."""

    field: str = Field(min_length=1)
    """The lead's custom field of type ``user`` the owner goes to (name or ``cf_`` id)."""
    on_match: Literal["keep", "fill", "reassign"] = "keep"
    """A matched lead keeps its owner (``keep``), gets one only when it has none (``fill``),
    or is assigned again (``reassign``)."""
    rules: tuple[OwnerRule, ...] = ()
    user: str | None = None
    pool: str | None = None
    pools: dict[str, PoolSpec] = Field(default_factory=dict)
    absent: tuple[str, ...] = ()
    """Users not to assign to now (holidays); deactivated users are skipped anyway."""
    default: str | None = None
    """The owner when the chosen pool has nobody available (else the lead gets no owner)."""

    @model_validator(mode="after")
    def _targets(self) -> OwnerSpec:
        if self.user is not None and self.pool is not None:
            raise ValueError("choose either 'user' or 'pool' for leads no rule matches")
        if self.user is None and self.pool is None and not self.rules:
            raise ValueError("needs a 'user', a 'pool' or 'rules'")
        named = [self.pool, *(rule.pool for rule in self.rules)]
        missing = sorted({p for p in named if p is not None and p not in self.pools})
        if missing:
            raise ValueError(f"unknown pool(s) {', '.join(missing)}; pools: {sorted(self.pools)}")
        return self


# -- task, sequence ---------------------------------------------------------------------------


class TaskSpec(_Spec):
    """A task for the owner (or a fixed user): ``text`` is a ``${field}`` template."""

    text: str = Field(min_length=1)
    type: Literal["lead", "outgoing_call"] = "lead"
    """``lead`` (a to-do on the lead) or ``outgoing_call`` (call the submitting contact)."""
    due_in: float = 0.0
    """Due this long after the submission was received: 0, ``30m``, ``2h``, ``1d``."""
    assign_to: str = "owner"
    """``owner``, or a user's email or id."""
    on_match: bool | None = None

    _check_text = field_validator("text")(_text)

    @field_validator("due_in", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return duration_seconds(value)


class SequenceSpec(_Spec):
    """Subscribe the submitting contact to a sequence (by name or ``seq_`` id)."""

    name: str = Field(min_length=1)
    sender: str = "owner"
    """Whose connected email account sends it: ``owner``, or a user's email or id."""
    on_match: bool | None = None


# -- update (on a match) ----------------------------------------------------------------------


class StatusRule(_Spec):
    """On a match, move a lead in one of the ``from`` statuses to ``to`` (labels or ids)."""

    from_: tuple[str, ...] = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)


class UpdateSpec(_Spec):
    """What a re-submission changes on the matched lead: a policy per field of the lead
    template (``name``, ``url``, ``description``, ``addresses``, custom fields by the name the
    template uses); fields not listed get ``default``."""

    default: UpdatePolicy = "fill_if_empty"
    fields: dict[str, UpdatePolicy] = Field(default_factory=dict)
    contact: Literal["add", "never"] = "add"
    """The submitted phone (and email) added to the matched contact when it lacks them."""
    status: tuple[StatusRule, ...] = ()


# -- opportunity ------------------------------------------------------------------------------


class OpportunityChoice(_Spec):
    """What an opportunity rule (or the section itself) sets."""

    pipeline: str | None = None
    status: str | None = None
    value: str | None = None
    """A JMESPath expression: the value in the currency's major unit (``1200.50``, ``"1,200"``);
    sent in cents, as Close expects."""
    value_period: str | None = None
    """``one_time``, ``monthly``, ``annual``, or an expression giving one of them."""
    confidence: int | None = Field(None, ge=0, le=100)
    note: str | None = None
    """A ``${field}`` template."""

    _check_value = field_validator("value")(_expression)
    _check_note = field_validator("note")(_text)

    @field_validator("value_period")
    @classmethod
    def _period(cls, value: str | None) -> str | None:
        if value is None or value in PERIODS:
            return value
        return _expression(value)


class OpportunityRule(OpportunityChoice):
    when: str = Field(alias="if")
    skip: bool = False
    """No opportunity for submissions this rule matches."""

    _check_if = field_validator("when")(_expression)


class OpportunitySpec(OpportunityChoice):
    """An opportunity on the lead, in a pipeline and status given by name."""

    policy: Literal["always", "if_none_active"] = "if_none_active"
    """``if_none_active``: only when the lead has no active opportunity in that pipeline."""
    user: str = "owner"
    """The opportunity's user: ``owner``, or a user's email or id."""
    rules: tuple[OpportunityRule, ...] = ()
    on_match: bool | None = None


# -- custom activity --------------------------------------------------------------------------


class ActivitySpec(_Spec):
    """The submission as a custom activity: the type by name, its fields (by name) mapped from
    the canonical record with JMESPath (``source``, ``attribution.page_url``, ``extra.plan``).
    ``marker_field`` names a text field of the type that gets the submission id: after a lost
    answer the worker finds the activity by it (without one, by the mapped values, and an
    activity may be posted twice)."""

    type: str = Field(min_length=1)
    fields: dict[str, str] = Field(default_factory=dict)
    marker_field: str | None = Field(default=None, min_length=1)
    status: Literal["published", "draft"] = "published"
    on_match: bool | None = None

    @field_validator("fields")
    @classmethod
    def _expressions(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            problem = expression_problem(text)
            if problem:
                raise ValueError(f"{name}: {problem}")
        return value


class FollowupSpec(_Spec):
    """The ``followup:`` section of a source."""

    on_match: bool = False
    """Run the task, sequence, opportunity and activity after a match too (each can say
    otherwise with its own ``on_match``); the owner and the update have their own rules."""
    owner: OwnerSpec | None = None
    task: TaskSpec | None = None
    sequence: SequenceSpec | None = None
    update: UpdateSpec | None = None
    opportunity: OpportunitySpec | None = None
    activity: ActivitySpec | None = None

    @model_validator(mode="after")
    def _owner_needed(self) -> FollowupSpec:
        needs = []
        if self.task is not None and self.task.assign_to == "owner":
            needs.append("task.assign_to")
        if self.sequence is not None and self.sequence.sender == "owner":
            needs.append("sequence.sender")
        if self.opportunity is not None and self.opportunity.user == "owner":
            needs.append("opportunity.user")
        if needs and self.owner is None:
            raise ValueError(
                f"{', '.join(needs)} name the owner, but there is no 'owner' section; add one "
                "or name a user"
            )
        return self

    def runs(self, step_on_match: bool | None, *, created: bool) -> bool:
        """Whether a step with this ``on_match`` runs for a created (or matched) lead."""
        if created:
            return True
        return self.on_match if step_on_match is None else step_on_match
